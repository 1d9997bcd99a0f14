"""Model selection on a held-out split (``train.eval_split``) and Lake's within-alphabet
evaluation, from the config and the command line."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from safetensors.torch import load_file

from attnmeta.checkpoint import read_checkpoint_record
from attnmeta.runs import episodic
from attnmeta.runs.config import ConfigError, config_from_dict, config_to_dict
from attnmeta.runs.folder import read_run
from attnmeta.runs.episodic import RunError, evaluate_checkpoint, load_run, train_run
from attnmeta.tasks.data_root import DATA_ROOT_ENV_VAR
from support import benchmark_module, make_image_folder, one_line_error, tiny_config


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
    ({"train": {"select": "first"}}, "train.select"),
    ({"train": {"select": "best", "eval_every": 0}}, "train.select"),  # nothing to rank
    ({"kind": "pretrain", "train": {"select": "best"}}, "train.select"),  # eval_every: 0
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
    assert result.within == "alphabet" and result.n_way == 20
    assert result.result_path.endswith("eval_test_20w1s_within_alphabet.json")
    across = evaluate_checkpoint(tmp_path / "run", within="none", save=False)
    assert across.within == "none"


# train.select: best --------------------------------------------------------------------
class Interrupt(Exception):
    pass


def scripted_evaluations(monkeypatch, accuracy_at: dict[int, float], first_step: int = 1):
    """In-training evaluations that report ``accuracy_at[step]``; the step is followed
    through ``on_step_end`` (which runs after its step's evaluation). Returns that hook."""
    seen = {"step": first_step - 1}

    def evaluation(learner, split, name, *args):
        return lambda: {f"{name}_accuracy": accuracy_at[seen["step"] + 1], f"{name}_ci95": 0.0}

    monkeypatch.setattr(episodic, "in_training_evaluation", evaluation)
    return lambda step: seen.update(step=step)


def selecting_config(data_root, steps: int):
    return with_changes(tiny_config(data_root, "protonet", steps=steps),
                        train={"select": "best", "eval_every": 1, "checkpoint_every": 3,
                               "keep_checkpoints": 1})


def checkpoint_names(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").glob("*.json"))


def test_select_best_keeps_and_reads_the_checkpoint_of_the_best_evaluation(
        tmp_path, data_root, monkeypatch):
    # step 4 is the best; step 6 only ties it (a later tie does not replace the selection)
    accuracy = {1: .2, 2: .5, 3: .4, 4: .9, 5: .6, 6: .9, 7: .3, 8: .7}
    hook = scripted_evaluations(monkeypatch, accuracy)
    run = tmp_path / "run"
    train_run(selecting_config(data_root, 8), run, progress=False, on_step_end=hook)
    # keep_checkpoints 1: the newest (8) and the selected one, which pruning spares
    assert checkpoint_names(run) == ["step_0000004.json", "step_0000008.json"]
    latest = read_checkpoint_record(run / "checkpoints/step_0000008.json")
    assert latest["selected"] == {"step": 4, "checkpoint": "step_0000004.json",
                                  "metric": "val_accuracy", "value": .9}
    assert read_run(run, "supervised")[0].name == "step_0000004.json"
    # a checkpoint file is read as it is
    assert read_run(run / "checkpoints/step_0000008.json", "supervised")[0].name == \
        "step_0000008.json"
    saved = load_file(run / "checkpoints/step_0000004.safetensors")
    loaded = load_run(run).learner.state_dict()
    assert all(torch.equal(loaded[k[len("model/"):]], v) for k, v in saved.items()
               if k.startswith("model/"))
    assert not torch.equal(loaded["encoder.features.0.0.weight"],
                           load_file(run / "checkpoints/step_0000008.safetensors")[
                               "model/encoder.features.0.0.weight"])
    assert evaluate_checkpoint(run, episodes=4, save=False).step == 4
    # benchmarks/pretrain.py: a run started from the selected checkpoint counts the
    # pretraining that chose it (to step 8), not only the minutes up to step 4
    minutes = benchmark_module("pretrain", monkeypatch)
    selected, newest = (run / "checkpoints" / name for name in checkpoint_names(run))
    assert minutes.newest_selecting(selected) == newest
    assert minutes.checkpoint_minutes(selected) == minutes.train_minutes(newest)
    assert minutes.train_minutes(newest) > minutes.train_minutes(selected)


def test_a_killed_selecting_run_resumes_to_the_same_selection(tmp_path, data_root, monkeypatch):
    accuracy = {1: .3, 2: .8, 3: .5, 4: .6, 5: .7, 6: .75}  # best: step 2, before the kill
    config = selecting_config(data_root, 6)
    straight = tmp_path / "straight"
    train_run(config, straight, progress=False,
              on_step_end=scripted_evaluations(monkeypatch, accuracy))
    killed = tmp_path / "killed"
    follow = scripted_evaluations(monkeypatch, accuracy)

    def kill_after_4(step: int) -> None:
        follow(step)
        if step == 4:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_run(config, killed, progress=False, on_step_end=kill_after_4)
    assert checkpoint_names(killed) == ["step_0000002.json", "step_0000003.json"]
    resumed = train_run(config, killed, resume=True, progress=False,
                        on_step_end=scripted_evaluations(monkeypatch, accuracy, first_step=4))
    assert resumed.resumed_from == 3
    # without the selection restored, step 4's 0.6 would have beaten "nothing yet"
    assert read_run(killed, "supervised")[0].name == "step_0000002.json"
    assert checkpoint_names(killed) == checkpoint_names(straight)
    for name in ("step_0000002", "step_0000006"):
        assert load_file(straight / f"checkpoints/{name}.safetensors").keys() == \
            load_file(killed / f"checkpoints/{name}.safetensors").keys()
        a = load_file(straight / f"checkpoints/{name}.safetensors")
        b = load_file(killed / f"checkpoints/{name}.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a), name
