"""FewShotClassifier on sentences (real CLINC150, skipped where absent): a CSV of unseen
intents, predictions equal to the learner's on an episode, the out-of-scope threshold
chosen on meta-val carried into the adapted model, and the ONNX graph over token ids."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from attnmeta.cli import main
from attnmeta.fewshot import FewShotClassifier, InputError
from attnmeta.runs.build import make_episodes
from attnmeta.runs.config import config_from_dict
from attnmeta.runs.out_of_scope import evaluate_out_of_scope
from attnmeta.runs.episodic import train_run
from attnmeta.tasks.intents import load_intent_texts
from support import REAL_DATA, needs_real_data, tiny_text_config

pytestmark = needs_real_data


@pytest.fixture(scope="module")
def text_run(tmp_path_factory) -> Path:
    mp = pytest.MonkeyPatch()
    mp.setenv("ATTNMETA_DATA", str(REAL_DATA))
    run = tmp_path_factory.mktemp("text") / "run"
    config = config_from_dict(tiny_text_config("clinc150", "matching", steps=2))
    train_run(config, run, progress=False, will_evaluate=False)
    evaluate_out_of_scope(run, episodes=4, threshold_episodes=4)
    yield run
    mp.undo()


def intent_csv(path: Path, intents: int = 3, per_intent: int = 5) -> tuple[Path, list[str]]:
    texts = load_intent_texts("clinc150", str(REAL_DATA), "test")
    rows, names = [], texts.class_names[:intents]
    for label, name in enumerate(names):
        picked = [t for t, y in zip(texts.texts, texts.labels.tolist()) if y == label]
        rows += [(text, name) for text in picked[:per_intent]]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path, names


def test_text_predictions_equal_the_learners_on_an_episode(text_run):
    model = FewShotClassifier.from_run(text_run)
    assert model.preprocessing.modality == "text"
    texts = load_intent_texts("clinc150", str(REAL_DATA), "test")
    episode = make_episodes(_token_split(model, texts), model.config.data.test, 2, seed=4)[0]
    sentences = {tuple(ids.tolist()): i for i, ids in enumerate(_token_split(model, texts).items)}
    support = [(texts.texts[sentences[tuple(ids.tolist())]], f"c{int(y)}")
               for ids, y in zip(episode.support_x, episode.support_y)]
    queries = [texts.texts[sentences[tuple(ids.tolist())]] for ids in episode.query_x]
    model.fit(support)
    expected = model.learner.predict(episode.support_x, episode.support_y, episode.query_x)
    logits, _ = model.logits(queries)
    assert torch.equal(logits.argmax(-1), expected.argmax(-1))
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)


def _token_split(model, texts):
    from attnmeta.tasks.text import LabelledTokens

    ids = model.tokenizer.encode_batch(texts.texts, model.preprocessing.max_length)
    return LabelledTokens(ids, texts.labels, texts.class_names, texts.texts, "test")


def test_adapt_on_a_csv_carries_the_out_of_scope_threshold(tmp_path, text_run):
    support, names = intent_csv(tmp_path / "support.csv")
    model_dir = tmp_path / "model"
    outcome = CliRunner().invoke(main, ["adapt", str(text_run), "--support", str(support),
                                        "--out", str(model_dir)])
    assert outcome.exit_code == 0, outcome.output
    assert "out-of-scope rejection carried from eval_test_oos_4w1s.json" in outcome.stdout
    chosen = json.loads((text_run / "eval_test_oos_4w1s.json").read_text())
    model = FewShotClassifier.load(model_dir)
    assert model.class_names == sorted(names)
    assert model.out_of_scope["threshold"] == chosen["threshold"]
    queries = tmp_path / "queries.txt"
    queries.write_text("what is the capital of mongolia\nplay some jazz please\n")
    outcome = CliRunner().invoke(main, ["predict", str(model_dir), str(queries), "--json"])
    assert outcome.exit_code == 0, outcome.output
    records = [json.loads(line) for line in outcome.stdout.splitlines()]
    logits, _ = model.logits([str(queries)])
    scores = (torch.softmax(logits, -1).max(-1).values if chosen["score"] == "max_softmax"
              else logits.max(-1).values)
    assert [r["label"] is None for r in records] == (scores < chosen["threshold"]).tolist()
    with pytest.raises(InputError, match="is an image, but the model reads text"):
        png = tmp_path / "x.png"
        png.write_bytes(b"\x89PNG")
        model.predict([png])


def test_text_onnx_export_over_token_ids(tmp_path, text_run):
    pytest.importorskip("onnxruntime")
    from attnmeta.fewshot.export import export_onnx, onnx_probabilities

    support, _ = intent_csv(tmp_path / "support.csv")
    model = FewShotClassifier.from_run(text_run).fit(support)
    result = export_onnx(model, tmp_path / "text.onnx")
    assert result["max_abs_difference"] < 1e-5
    query_x, _ = model.query_inputs(["book me a table for two", "how do i reset my pin", "hi"])
    torch.testing.assert_close(onnx_probabilities(tmp_path / "text.onnx", query_x),
                               model.predict_proba(query_x), rtol=0, atol=1e-5)


def test_text_explanation_holds_the_querys_token_attention(tmp_path, text_run):
    from attnmeta.viz.explain import explanation_png

    support, _ = intent_csv(tmp_path / "support.csv")
    model = FewShotClassifier.from_run(text_run).fit(support)
    explanation = model.explain("please book a table for two tonight")
    tokens = explanation.query_tokens
    assert tokens and explanation.maps["query_tokens"].shape == (1, len(tokens), len(tokens))
    torch.testing.assert_close(explanation.maps["query_tokens"][0].sum(-1),
                               torch.ones(len(tokens)))  # each token's attention: a distribution
    assert explanation.support_weights is not None  # matching: attention over the support set
    assert explanation_png(explanation)[:8] == b"\x89PNG\r\n\x1a\n"
