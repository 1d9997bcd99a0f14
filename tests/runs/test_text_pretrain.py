"""Pretraining over the training intents (``kind: pretrain`` on CLINC150 / BANKING77): a
linear map over frozen WordLlama vectors, started at the identity, with an imprinted cosine
classifier; its tokenizer kept in the run folder; resumed bit for bit; evaluated (also with
out-of-scope queries), fitted from the product API, and a start for a frozen FEAT head."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from attnmeta.metrics import summarize
from attnmeta.learners import ProtoNet
from attnmeta.runs.build import build_backbone, load_split
from attnmeta.runs.config import config_from_dict, load_config
from attnmeta.runs.evaluation import episode_accuracies, evaluate_checkpoint
from attnmeta.runs.out_of_scope import evaluate_out_of_scope
from attnmeta.runs.pretrain import train_pretrain
from attnmeta.runs.episodic import load_run, train_run
from support import REAL_DATA, needs_real_data, one_line_error, tiny_text_config

pytest.importorskip("wordllama")
pytestmark = needs_real_data
CONFIGS = Path(__file__).parents[2] / "configs" / "text"


@pytest.fixture(autouse=True)
def real_data(monkeypatch) -> Path:
    monkeypatch.setenv("ATTNMETA_DATA", str(REAL_DATA))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return REAL_DATA


def tiny_pretrain(steps: int = 4, lr: float = 1e-3, dataset: str = "clinc150"):
    """The shipped config, a few small steps long."""
    config = load_config(CONFIGS / f"pretrain_wordllama_{dataset}.yaml", [
        f"train.steps={steps}", "train.batch_size=16", f"train.lr={lr}", "train.log_every=1",
        "train.checkpoint_every=2", "train.eval_every=2", "train.eval_episodes=4",
        "eval.episodes=20"])
    config.data.root = str(REAL_DATA)
    return config


def last_weights(run: Path) -> dict:
    return load_file(sorted((run / "checkpoints").glob("step_*.safetensors"))[-1])


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("text-pretrain") / "run"
    train_pretrain(tiny_pretrain(steps=4), run, progress=False)
    return run


def test_a_text_pretrain_run_keeps_wordllamas_tokenizer_and_resumes_bit_for_bit(tmp_path,
                                                                                pretrained):
    from attnmeta.models.wordllama import wordllama_tokenizer

    assert (pretrained / "tokenizer.json").read_text() == wordllama_tokenizer().to_json()
    weights = last_weights(pretrained)
    assert set(weights) >= {"model/encoder.projection.weight", "model/classifier.weight"}
    assert not any("embedding" in name for name in weights)  # the frozen table is not saved
    resumed = tmp_path / "resumed"
    train_pretrain(tiny_pretrain(steps=2), resumed, progress=False)
    config = tiny_pretrain(steps=4)
    assert train_pretrain(config, resumed, resume=True, progress=False).resumed_from == 2
    again = last_weights(resumed)
    assert all(torch.equal(weights[name], again[name]) for name in weights)


def test_the_untrained_start_is_wordllamas_cosine_prototypes(tmp_path):
    """One step at a negligible learning rate: the identity map and the imprinted classifier
    leave exactly the zero-training baseline, evaluated on the same episodes."""
    run = tmp_path / "start"
    config = tiny_pretrain(steps=1, lr=1e-12)
    train_pretrain(config, run, progress=False, will_evaluate=False)
    ours = evaluate_checkpoint(run, episodes=20, k_shot=5, save=False)
    baseline_config = copy.deepcopy(config)
    baseline_config.model.project = False
    baseline = ProtoNet(build_backbone(baseline_config, 0), "cosine")
    test = config.data.test
    expected = summarize(episode_accuracies(
        baseline, load_split(config, "test", load_run_tokenizer(run)),
        type(test)(test.n_way, 5, test.q_query), 20, config.eval.seed))
    assert (ours.k_shot, ours.episodes) == (5, 20)
    assert ours.accuracy == pytest.approx(expected.mean, abs=1e-9)


def load_run_tokenizer(run: Path):
    from attnmeta.runs.tokenizer import load_run_tokenizer as load

    return load(run)


def test_a_text_pretrain_run_detects_out_of_scope_queries_and_fits_from_the_api(pretrained):
    found = evaluate_out_of_scope(pretrained, episodes=6, threshold_episodes=4, save=False)
    assert found.learner == "pretrain" and 0.0 <= found.oos_recall <= 1.0

    from attnmeta.fewshot import FewShotClassifier

    support = [("what is my balance", "balance"), ("how much money do I have", "balance"),
               ("book a table for two", "restaurant"), ("reserve a table tonight", "restaurant")]
    model = FewShotClassifier.from_run(pretrained).fit(support)
    assert model.predict(["how much is in my account"]) == ["balance"]


def test_a_frozen_feat_head_starts_from_the_text_pretrain_run(tmp_path, pretrained):
    values = tiny_text_config("clinc150", "feat", steps=1, backbone="wordllama")
    values["model"] = {"backbone": "wordllama", "depth": 0, "normalize": True, "project": True,
                       "init": str(pretrained), "freeze": True}
    run = tmp_path / "feat"
    train_run(config_from_dict(values), run, progress=False)
    assert (run / "tokenizer.json").read_text() == (pretrained / "tokenizer.json").read_text()
    encoder = load_run(run).learner.frozen_encoder
    assert torch.equal(encoder.projection.weight,
                       last_weights(pretrained)["model/encoder.projection.weight"])
    # out-of-scope queries reach the head as the frozen encoder's features too
    found = evaluate_out_of_scope(run, episodes=4, threshold_episodes=3, save=False)
    assert found.learner == "feat" and 0.0 <= found.in_scope_accuracy <= 1.0


@pytest.mark.parametrize("override, expected", [
    ("train.shift=2", "train.shift' is 2: expected 0 for the text data set"),
    ("learner.classifier=linear", "learner.init"),
    ("model.backbone=text_transformer model.depth=1", "model.project"),
])
def test_text_pretrain_options_that_cannot_work_are_one_line_errors(tmp_path, override,
                                                                    expected):
    config = CONFIGS / "pretrain_wordllama_clinc150.yaml"
    one_line_error(["train", config, *override.split(), "--out", tmp_path / "run",
                    "--no-progress", "--data-root", REAL_DATA], *expected.split("|"))
    assert not (tmp_path / "run").exists()
