"""Model selection on a held-out split (``train.eval_split``) and Lake's within-alphabet
evaluation, from the config and the command line."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from attnmeta.runs.config import ConfigError, config_from_dict, config_to_dict
from attnmeta.runs.supervised import RunError, evaluate_checkpoint, train_run
from attnmeta.tasks.data_root import DATA_ROOT_ENV_VAR
from support import make_image_folder, one_line_error, tiny_config


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("images"))


def logged(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def with_changes(config, **sections):
    values = config_to_dict(config)
    for section, changes in sections.items():
        values[section].update(changes)
    return config_from_dict(values)


def test_eval_split_chooses_what_in_training_evaluation_reads(tmp_path, data_root):
    config = with_changes(tiny_config(data_root, "protonet", steps=3), train={"eval_split": "test"})
    train_run(config, tmp_path / "run", progress=False)
    assert [e["step"] for e in logged(tmp_path / "run") if "test_accuracy" in e] == [3]
    assert config.eval.split == "test" and tiny_config(data_root).train.eval_split == "val"


def test_a_missing_validation_split_is_refused_before_training(tmp_path, data_root):
    root = tmp_path / "images"
    shutil.copytree(data_root, root)
    shutil.rmtree(root / "val")
    with pytest.raises(FileNotFoundError) as excinfo:
        train_run(tiny_config(root, "protonet", steps=3), tmp_path / "run", progress=False)
    message = str(excinfo.value)
    assert "\n" not in message and str(root / "val") in message
    assert "train.eval_split='val'" in message and "train.eval_split=test" in message
    assert not (tmp_path / "run" / "checkpoints").exists()
    # without in-training evaluation nothing reads val
    config = with_changes(tiny_config(root, "protonet", steps=3), train={"eval_every": 0})
    train_run(config, tmp_path / "run2", progress=False)


@pytest.mark.parametrize("values, key", [
    ({"data": {"test": {"within": "alphabet"}}}, "data.test.within"),  # vinyals: rotations
    ({"data": {"dataset": "image_folder", "protocol": "lake", "train": {"within": "alphabet"}}},
     "data.train.within"),
    ({"data": {"test": {"within": "script"}}}, "data.test.within"),
    ({"learner": {"label_encoding": "onehot"}}, "learner.label_encoding"),
    ({"train": {"eval_split": "validation"}}, "train.eval_split"),
])
def test_new_keys_refuse_bad_values_naming_the_key(values, key):
    with pytest.raises(ConfigError) as excinfo:
        config_from_dict(values)
    assert f"config key '{key}'" in str(excinfo.value) and "\n" not in str(excinfo.value)


def test_within_alphabet_is_refused_for_a_run_without_alphabets(tmp_path, data_root):
    config = with_changes(tiny_config(data_root, "protonet", steps=2), train={"eval_every": 0})
    train_run(config, tmp_path / "run", progress=False)
    with pytest.raises(RunError, match="expected data.protocol='lake'"):
        evaluate_checkpoint(tmp_path / "run", within="alphabet", save=False)
    one_line_error(["eval", tmp_path / "run", "--within-alphabet", "--no-progress"],
                   "within='alphabet'", "data.protocol='lake'")


def real_omniglot() -> Path | None:
    root = os.environ.get(DATA_ROOT_ENV_VAR)
    return Path(root) if root and (Path(root) / "omniglot").is_dir() else None


@pytest.mark.skipif(real_omniglot() is None, reason=f"set {DATA_ROOT_ENV_VAR} to a folder "
                    "holding omniglot/ to run on real Omniglot")
def test_lake_run_selects_on_val_and_evaluates_within_alphabet(tmp_path):
    config = config_from_dict({
        "name": "lake", "data": {"dataset": "omniglot", "root": str(real_omniglot()),
                                 "protocol": "lake", "image_size": 28,
                                 "train": {"n_way": 5, "k_shot": 1, "q_query": 1},
                                 "test": {"n_way": 20, "k_shot": 1, "q_query": 1,
                                          "within": "alphabet"}},
        "model": {"hidden": 8, "norm": "running"},
        "learner": {"name": "protonet"},
        "train": {"steps": 2, "log_every": 1, "checkpoint_every": 2, "eval_every": 2,
                  "eval_episodes": 4},
        "eval": {"episodes": 4, "seed": 1},
    })
    train_run(config, tmp_path / "run", progress=False)
    assert [e["step"] for e in logged(tmp_path / "run") if "val_accuracy" in e] == [2]
    result = evaluate_checkpoint(tmp_path / "run", save=False)
    assert result["within"] == "alphabet" and result["n_way"] == 20
    assert result["result_path"].endswith("eval_test_20w1s_within_alphabet.json")
    across = evaluate_checkpoint(tmp_path / "run", within="none", save=False)
    assert across["within"] == "none"
