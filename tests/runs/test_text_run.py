"""Text runs end to end on the real CLINC150 / BANKING77 files (skipped when absent):
train -> checkpoint + tokenizer.json -> resume -> eval (and --oos) -> viz, API and CLI;
and one training step of every shipped text learner (no data needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from attnmeta.cli import main
from attnmeta.runs.build import build_model, load_split
from attnmeta.runs.config import config_from_dict
from attnmeta.runs.out_of_scope import evaluate_out_of_scope
from attnmeta.runs.episodic import RunError, evaluate_checkpoint, load_run, train_run
from support import REAL_DATA, needs_real_data, tiny_text_config


@pytest.fixture
def real_data(monkeypatch) -> Path:
    monkeypatch.setenv("ATTNMETA_DATA", str(REAL_DATA))  # the loaders resolve the root from it
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return REAL_DATA


@needs_real_data
@pytest.mark.parametrize("dataset", ["clinc150", "banking77"])
def test_text_run_trains_resumes_with_its_tokenizer_and_evaluates(tmp_path, real_data, dataset):
    run = tmp_path / "run"
    config = config_from_dict(tiny_text_config(dataset))
    assert train_run(config, run, progress=False).steps == 4
    saved_tokenizer = (run / "tokenizer.json").read_text()
    assert json.loads(saved_tokenizer)["model"]["type"] == "BPE"

    config.train.steps = 6
    train_run(config, run, resume=True, progress=False)
    assert (run / "tokenizer.json").read_text() == saved_tokenizer

    result = evaluate_checkpoint(run)
    assert result.step == 6 and result.n_way == 4 and result.episodes == 8
    assert 0.0 <= result.accuracy <= 1.0
    assert Path(result.written_to).name == "eval_test_4w1s.json"

    if dataset == "clinc150":
        found = evaluate_out_of_scope(run, episodes=6, threshold_episodes=4)
        assert found.oos_per_episode == 3 and 0.0 <= found.oos_recall <= 1.0
        assert 0.0 <= found.in_scope_accuracy <= result.accuracy + 0.5
        assert Path(found.written_to).name == "eval_test_oos_4w1s.json"
    else:
        with pytest.raises(RunError, match=r"data.dataset='banking77' has none"):
            evaluate_out_of_scope(run, episodes=6, threshold_episodes=4)

    (run / "tokenizer.json").unlink()  # a resume must not silently train a new one
    config.train.steps = 8
    with pytest.raises(FileNotFoundError, match=r"tokenizer.json does not exist"):
        train_run(config, run, resume=True, progress=False)


@needs_real_data
def test_text_config_errors_are_one_line(tmp_path, real_data):
    values = tiny_text_config("clinc150")
    values["model"]["backbone"] = "conv4"
    with pytest.raises(ValueError, match=r"model.backbone' is 'conv4': expected one of "
                       r"'text_transformer', 'hf', 'wordllama', 'minilm' for the text data set"):
        build_model(config_from_dict(values))
    config = config_from_dict(tiny_text_config("clinc150"))
    with pytest.raises(ValueError, match=r"expected the run's tokenizer"):
        load_split(config, "train")
    values = tiny_text_config("clinc150")
    values["data"]["train"]["n_way"] = 150
    with pytest.raises(ValueError, match=r"data.train: n_way=150 but the train split has 100 "):
        train_run(config_from_dict(values), tmp_path / "too-wide", progress=False)


@needs_real_data
def test_cli_trains_evaluates_and_draws_a_text_run(tmp_path, real_data):
    config_path = tmp_path / "matching.yaml"
    config_path.write_text(yaml.safe_dump(tiny_text_config("clinc150", "matching", steps=2)))
    runner = CliRunner()
    run = tmp_path / "run"
    result = runner.invoke(main, ["train", str(config_path), "--out", str(run), "--no-progress",
                                  "--data-root", str(real_data)])
    assert result.exit_code == 0, result.output
    assert "matching 4-way 1-shot" in result.output
    result = runner.invoke(main, ["eval", str(run), "--oos", "--episodes", "4",
                                  "--threshold-episodes", "3"])
    assert result.exit_code == 0, result.output
    assert "out-of-scope recall" in result.output and "chosen on val" in result.output
    result = runner.invoke(main, ["viz", str(run), "--out", str(tmp_path / "maps")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "maps" / "attention_text_q0.png").stat().st_size > 10_000
    result = runner.invoke(main, ["eval", str(tmp_path / "nowhere")])
    assert result.exit_code != 0 and "nowhere" in result.output


@needs_real_data
def test_hf_backbone_trains_from_scratch_through_the_same_run(tmp_path, real_data):
    pytest.importorskip("transformers")
    config = config_from_dict(tiny_text_config("banking77", "feat", steps=2, backbone="hf"))
    train_run(config, tmp_path / "hf", progress=False)
    assert type(load_run(tmp_path / "hf").learner.encoder).__name__ == "HFTextEncoder"
    assert 0.0 <= evaluate_checkpoint(tmp_path / "hf", episodes=4).accuracy <= 1.0


def takes_a_training_step(config, vocab_size: int) -> None:
    """One training step of ``config``'s learner on random token ids: a finite loss and a
    gradient that reaches the parameters (a pretrain run's classifier on a class batch; a
    frozen encoder's head on the features of the ids)."""
    import torch

    from attnmeta.learners import ClassBatch
    from attnmeta.runs.build import build_classifier, build_learner
    from attnmeta.tasks.episode import Episode

    torch.manual_seed(0)
    if config.kind == "pretrain":
        model = build_classifier(config, 4)
        ids = torch.randint(1, vocab_size, (12, 10))
        ids[6:, 6:] = 0  # padded
        batch = ClassBatch(ids, torch.arange(12) % 4)
    else:
        model = build_learner(config)
        shape = config.data.train
        support = torch.randint(1, vocab_size, (shape.n_way * shape.k_shot, 10))
        query = torch.randint(1, vocab_size, (shape.n_way * 2, 10))
        query[..., 6:] = 0  # padded
        if config.model.freeze:  # its batches hold the frozen encoder's features
            support, query = model.embed(support), model.embed(query)
        batch = Episode(support[None], torch.arange(shape.n_way).repeat_interleave(
            shape.k_shot)[None], query[None], torch.arange(shape.n_way).repeat_interleave(2)[None])
    output = model.training_step(batch)
    output.loss.backward()
    assert torch.isfinite(output.loss)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("learner", ["protonet", "matching", "feat", "incontext", "maml",
                                     "reptile"])
def test_each_shipped_text_learner_takes_a_training_step(learner):
    """configs/text/<learner>_clinc150_*.yaml as shipped, on random token ids (no data)."""

    from attnmeta.runs.config import load_config

    path = sorted((Path(__file__).parents[2] / "configs" / "text").glob(
        f"{learner}_clinc150_*.yaml"))[0]
    config = load_config(path)
    takes_a_training_step(config, vocab_size=config.data.vocab_size)


def wordllama_config(learner: str = "protonet", steps: int = 2, depth: int = 1) -> dict:
    values = tiny_text_config("clinc150", learner, steps, backbone="wordllama")
    values["model"] = {"backbone": "wordllama", "depth": depth, "heads": 4}
    if learner == "protonet":  # a key of protonet's own section
        values["learner"]["distance"] = "cosine"
    return values


@needs_real_data
def test_wordllama_run_trains_resumes_with_its_tokenizer_and_evaluates(tmp_path, real_data):
    pytest.importorskip("wordllama")
    from attnmeta.models.wordllama import wordllama_tokenizer

    run = tmp_path / "run"
    config = config_from_dict(wordllama_config())
    assert train_run(config, run, progress=False).steps == 2
    saved_tokenizer = (run / "tokenizer.json").read_text()
    assert saved_tokenizer == wordllama_tokenizer().to_json()  # its own, not a trained BPE
    assert json.loads(saved_tokenizer)["padding"]["pad_token"] == "<unk>"
    weights = sorted(run.glob("checkpoints/step_*.safetensors"))
    assert weights and weights[-1].stat().st_size < 8_000_000  # not the 32 MB frozen table

    config.train.steps = 3
    train_run(config, run, resume=True, progress=False)
    assert (run / "tokenizer.json").read_text() == saved_tokenizer
    assert type(load_run(run).learner.encoder).__name__ == "WordLlamaEncoder"
    result = evaluate_checkpoint(run)
    assert result.step == 3 and result.n_way == 4 and 0.25 < result.accuracy <= 1.0


@needs_real_data
@pytest.mark.parametrize("learner, override, expected", [
    ("protonet", "model.depth=0", "learner.name='protonet' over model.backbone='wordllama' "
                                  "has no trainable parameters"),
    ("protonet", "model.hf_path=/somewhere", "model.hf_path"),
    ("protonet", "model.heads=3", "a divisor of 256"),
    ("incontext", "model.depth=0", "model.depth"),
    ("protonet", "model.backbone=text_transformer model.depth=0",
     "is for model.backbone='wordllama'"),
])
def test_wordllama_options_that_cannot_work_are_one_line_errors(tmp_path, real_data, learner,
                                                                 override, expected):
    pytest.importorskip("wordllama")
    from support import one_line_error

    path = tmp_path / "wordllama.yaml"
    path.write_text(yaml.safe_dump(wordllama_config(learner)))
    one_line_error(["train", path, *override.split(), "--out", tmp_path / "run",
                    "--no-progress"], expected)


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[2] / "configs" / "text").glob(
    "*wordllama*.yaml")), ids=lambda path: path.stem)
def test_each_shipped_wordllama_config_takes_a_training_step(path):
    """configs/text/*wordllama*.yaml as shipped, on random token ids (no data needed)."""
    pytest.importorskip("wordllama")

    from attnmeta.runs.config import load_config

    config = load_config(path)
    assert config.model.backbone == "wordllama"
    takes_a_training_step(config, vocab_size=32000)


@needs_real_data
def test_frozen_wordllama_features_train_feat_and_cannot_be_drawn(tmp_path, real_data):
    pytest.importorskip("wordllama")
    from support import one_line_error

    values = wordllama_config("feat", steps=1, depth=0)
    values["model"]["normalize"] = True
    run = tmp_path / "run"
    train_run(config_from_dict(values), run, progress=False)
    encoder = load_run(run).learner.encoder
    assert not list(encoder.parameters()) and encoder.normalize  # only FEAT's adapter trains
    one_line_error(["viz", run, "--out", tmp_path / "maps"], "no attention layer to draw")
