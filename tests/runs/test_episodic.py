"""Config -> train -> checkpoint -> resume -> eval, on a tiny synthetic image folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from safetensors.torch import load_file

from attnmeta.checkpoint import CheckpointError, load_checkpoint
from attnmeta.cli import main
from attnmeta.runs.build import build_learner
from attnmeta.runs.config import ConfigError, config_from_dict, config_to_dict, load_config
from attnmeta.runs.episodic import evaluate_checkpoint, train_run
from support import make_image_folder, one_line_error, tiny_config


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("images"))


def final_weights(run_dir: Path) -> dict:
    latest = sorted((run_dir / "checkpoints").glob("step_*.safetensors"))[-1]
    return load_file(latest)


class Interrupt(Exception):
    pass


def interrupt_at(step_to_stop: int):
    def hook(step: int) -> None:
        if step == step_to_stop:
            raise Interrupt
    return hook


@pytest.mark.parametrize("learner, extra", [("protonet", {}), ("matching", {}), ("feat", {}),
                                            ("matching", {"fce": True}), ("incontext", {}),
                                            ("incontext", {"label_encoding": "elmes"}),
                                            ("fomaml", {}), ("maml", {}),
                                            ("reptile", {}),
                                            ("reptile", {"inner_optimizer": "adam"})])
def test_killed_run_resumes_to_the_same_weights(tmp_path, data_root, learner, extra):
    config = tiny_config(data_root, learner, **extra)
    train_run(config, tmp_path / "straight", progress=False)
    with pytest.raises(Interrupt):
        train_run(config, tmp_path / "killed", progress=False, on_step_end=interrupt_at(4))
    # The kill came after step 4; the last checkpoint is step 3, so steps 4.. are redone.
    assert sorted(p.name for p in (tmp_path / "killed" / "checkpoints").glob("*.json")) == [
        "step_0000003.json"]
    resumed = train_run(config, tmp_path / "killed", resume=True, progress=False)
    assert resumed.resumed_from == 3
    straight, again = final_weights(tmp_path / "straight"), final_weights(tmp_path / "killed")
    assert straight.keys() == again.keys()
    for key in straight:
        assert np.array_equal(straight[key].numpy(), again[key].numpy()), key


def test_run_folder_contents_and_eval(tmp_path, data_root):
    config = tiny_config(data_root, "protonet")
    train_run(config, tmp_path / "run", progress=False, command="attnmeta train tiny")
    run = tmp_path / "run"
    assert yaml.safe_load((run / "config.yaml").read_text())["name"] == "tiny-protonet"
    assert sorted(p.name for p in (run / "checkpoints").glob("*.json")) == [
        "step_0000003.json", "step_0000006.json"]
    logged = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    train_entries = [e for e in logged if "loss" in e]
    assert [entry["step"] for entry in train_entries] == [2, 4, 6]
    assert all(0 <= entry["accuracy"] <= 1 for entry in train_entries)
    # in-training evaluation reads train.eval_split ('val'), never the test split
    evaluations = [e for e in logged if "val_accuracy" in e]
    assert [e["step"] for e in evaluations] == [3, 6]
    assert all(0 <= e["val_accuracy"] <= 1 and e["elapsed_s"] > 0 for e in evaluations)
    assert not any("test_accuracy" in e for e in logged)
    assert list((run / "tb").glob("events.out.tfevents.*"))
    first = evaluate_checkpoint(run)
    second = evaluate_checkpoint(run / "checkpoints" / "step_0000006.json")
    assert first.accuracy == second.accuracy  # same seeded episodes, same weights
    assert first.episodes == 8 and first.episode_seed == 5 and first.step == 6
    saved = json.loads(Path(first.written_to).read_text())
    assert saved["accuracy"] == first.accuracy and 0 <= saved["accuracy"] <= 1
    other_seed = evaluate_checkpoint(run, seed=6, episodes=8)
    assert other_seed.episode_seed == 6


def test_learning_rate_halves_on_schedule(tmp_path, data_root):
    config = tiny_config(data_root, "protonet", steps=6)
    train_run(config, tmp_path / "run", progress=False)
    record = json.loads((tmp_path / "run/checkpoints/step_0000006.json").read_text())
    assert record["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.01 * 0.5)


def test_checkpoint_of_another_model_is_refused(tmp_path, data_root):
    train_run(tiny_config(data_root, "protonet"), tmp_path / "proto", progress=False)
    maml = build_learner(tiny_config(data_root, "maml"))
    with pytest.raises(CheckpointError, match="holds a different model .learner 'protonet'."):
        load_checkpoint(tmp_path / "proto", maml)


def test_corrupt_checkpoint_is_refused(tmp_path, data_root):
    config = tiny_config(data_root, "protonet")
    train_run(config, tmp_path / "run", progress=False)
    weights = tmp_path / "run/checkpoints/step_0000006.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(CheckpointError, match="do not match the sha256"):
        load_checkpoint(tmp_path / "run/checkpoints/step_0000006.json", build_learner(config))


def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key 'train.stpes'"):
        config_from_dict({"train": {"stpes": 3}})
    with pytest.raises(ConfigError, match="config key 'train.lr' is 'fast': expected a number"):
        config_from_dict({"train": {"lr": "fast"}})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    path = tmp_path / "c.yaml"
    path.write_text("name: x\ntrain:\n  steps: 5\n")
    config = load_config(path, ["train.steps=7", "learner.name=maml", "train.lr=2e-3"])
    assert (config.train.steps, config.learner.name, config.train.lr) == (7, "maml", 0.002)
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(path, ["train.steps"])


def test_cli_train_eval_and_one_line_errors(tmp_path, data_root):
    config = tiny_config(data_root, "protonet")
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config_to_dict(config)))
    runner = CliRunner()
    out = tmp_path / "cli-run"
    result = runner.invoke(main, ["train", str(path), "train.steps=3", "--out", str(out),
                                  "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "protonet 3-way 1-shot (test, 8 episodes, seed 5): accuracy" in result.output
    assert f"wrote {out / 'eval_test_3w1s.json'}" in result.output
    result = runner.invoke(main, ["eval", str(out), "--episodes", "4", "--no-progress"])
    assert result.exit_code == 0 and "4 episodes" in result.output, result.output

    one_line_error(["train", path, "data.train.n_way=9", "--out", tmp_path / "x",
                    "--no-progress"], "data.train: n_way=9 but the train split has 6 classes")
    one_line_error(["train", path, "data.train.k_shot=5", "--out", tmp_path / "y",
                    "--no-progress"], "data.train", "k_shot + q_query = 7")
    one_line_error(["train", path, "--data-root", tmp_path / "nowhere", "--out",
                    tmp_path / "z", "--no-progress"], "does not exist")
    one_line_error(["eval", tmp_path / "no-run"], "does not exist")
    one_line_error(["train", tmp_path / "nope.yaml"], "config file")


def test_every_shipped_config_is_valid():
    configs = sorted((Path(__file__).parents[2] / "configs" / "omniglot").glob("*.yaml"))
    assert len(configs) >= 40
    for path in configs:
        config = load_config(path)
        assert config.name == path.stem, path
        if config.kind != "episodic":  # pretrain_conv4: tests/runs/test_pretrain.py
            continue
        learner = build_learner(config)
        assert sum(p.numel() for p in learner.parameters()) > 100_000, path  # Conv4-64


def test_download_command_reports_errors_in_one_line(tmp_path, monkeypatch):
    import attnmeta.tasks.download as download
    from attnmeta.errors import DownloadError

    def refuse(url, destination, known_hash, **options):  # a failed transfer, as download_file says
        raise DownloadError(f"cannot reach {url}")

    monkeypatch.setattr(download, "download_file", refuse)
    one_line_error(["download", "omniglot", "--data-root", tmp_path], "cannot reach https://")
    (tmp_path / "omniglot").mkdir()
    garbage = tmp_path / "omniglot" / "images_background.zip"
    garbage.write_bytes(b"kept")  # not the upstream file: refused, and never overwritten
    one_line_error(["download", "omniglot", "--data-root", tmp_path], "images_background.zip",
                   "md5")
    assert garbage.read_bytes() == b"kept"


def test_learning_rate_schedules(data_root):
    from attnmeta.runs.episodic import learning_rate

    config = tiny_config(data_root, "reptile", steps=10)
    config.train.lr_schedule = "linear"
    assert [learning_rate(config, s) for s in (0, 5, 10)] == pytest.approx([0.01, 0.005, 0.0])
    config.train.lr_schedule = "step"  # lr_decay_every = 4
    assert [learning_rate(config, s) for s in (3, 4, 9)] == pytest.approx([0.01, 0.005, 0.0025])
    with pytest.raises(ConfigError, match="'train.lr_schedule' is 'cosine': expected one of"):
        config_from_dict({"train": {"lr_schedule": "cosine"}})


def test_a_new_learner_and_a_new_data_set_are_one_registry_line_each(tmp_path, data_root):
    """What the README's development section shows: no other file changes."""
    from attnmeta.learners import ProtoNet
    from attnmeta.runs.build import DATASETS, LEARNERS, DatasetEntry, LearnerEntry
    from attnmeta.tasks.image_folder import load_image_folder

    LEARNERS["cosine_protonet"] = LearnerEntry(
        ProtoNet, lambda spec, backbone: ProtoNet(backbone.model, distance="cosine"))
    DATASETS["my_images"] = DatasetEntry(
        lambda config, split, tokenizer: load_image_folder(config.data.root, split, 16))
    try:
        config = tiny_config(data_root, "protonet", steps=2)
        config.learner.name, config.data.dataset = "cosine_protonet", "my_images"
        result = train_run(config, tmp_path / "run", progress=False)
        assert result.steps == 2
        assert 0 <= evaluate_checkpoint(tmp_path / "run", episodes=4).accuracy <= 1
        assert build_learner(config).distance == "cosine"
    finally:
        LEARNERS.pop("cosine_protonet")
        DATASETS.pop("my_images")
