"""RL runs: seeded reproducibility, bit-exact resume, the CLI, and one-line config errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from safetensors.torch import load_file

from attnmeta.cli import main
from attnmeta.runs.config import ConfigError, config_from_dict, load_config
from attnmeta.runs.rl import (EVAL_TASKS, TRAIN_TASKS, build_family, evaluate_rl_run,
                              held_out_tasks, stream_seed, train_rl, training_batches)
from support import one_line_error

rl_config_from_dict = config_from_dict
load_rl_config = load_config


def tiny(learner: str = "maml", steps: int = 4, **policy) -> dict:
    return {
        "kind": "rl", "name": f"tiny-{learner}", "seed": 7,
        "env": {"name": "navigation2d", "horizon": 5},
        "policy": {"kind": "mlp", "hidden": [8], **policy},
        "learner": {"name": learner, "episodes_per_task": 2, "trial_episodes": 2},
        "train": {"steps": steps, "meta_batch": 2, "lr": 0.01, "log_every": 2,
                  "checkpoint_every": 2},
        "eval": {"tasks": 4, "episodes_per_task": 2, "steps": 2},
    }


def weights(run_dir: Path) -> dict:
    return load_file(sorted((run_dir / "checkpoints").glob("step_*.safetensors"))[-1])


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].equal(b[key]), key


def test_seeded_runs_are_reproducible(tmp_path):
    config = rl_config_from_dict(tiny())
    first = train_rl(config, tmp_path / "a", progress=False)
    train_rl(config, tmp_path / "b", progress=False)
    assert_same_weights(weights(tmp_path / "a"), weights(tmp_path / "b"))
    assert first.history[-1]["step"] == 4 and "return_after" in first.history[-1]
    other = rl_config_from_dict({**tiny(), "seed": 8})
    train_rl(other, tmp_path / "c", progress=False)
    assert not weights(tmp_path / "c")["model/model.net.0.weight"].equal(
        weights(tmp_path / "a")["model/model.net.0.weight"])


def test_resume_equals_an_uninterrupted_run(tmp_path):
    train_rl(rl_config_from_dict(tiny(steps=4)), tmp_path / "whole", progress=False)
    train_rl(rl_config_from_dict(tiny(steps=2)), tmp_path / "split", progress=False)
    resumed = train_rl(rl_config_from_dict(tiny(steps=4)), tmp_path / "split", resume=True,
                       progress=False)
    assert resumed.resumed_from == 2
    assert_same_weights(weights(tmp_path / "whole"), weights(tmp_path / "split"))


def test_held_out_tasks_come_from_their_own_seed_stream():
    config = rl_config_from_dict(tiny())
    family = build_family(config)
    training = next(training_batches(config, family, 0)).tasks
    held_out = held_out_tasks(family, 4, seed=config.seed)   # same seed, other stream
    assert not held_out[:2].equal(training)
    assert stream_seed(7, TRAIN_TASKS, 0) != stream_seed(7, EVAL_TASKS, 0)


def test_evaluation_of_an_in_context_run_reports_episodes_of_a_trial(tmp_path):
    config = rl_config_from_dict(tiny("incontext", steps=2, kind="attention", window=4,
                                      d_model=8, heads=2))
    train_rl(config, tmp_path / "ic", progress=False)
    result = evaluate_rl_run(tmp_path / "ic", seed=3)
    assert [r["k"] for r in result.returns] == [0, 1, 2]       # episodes 1..3
    assert len(result.per_task) == 4 and len(result.per_task[0]) == 3
    assert all(r["ci95"] > 0 and r["mean"] < 0 for r in result.returns)
    assert json.loads((tmp_path / "ic" / "eval_rl.json").read_text())["task_seed"] == 3


def test_cli_trains_and_evaluates_an_rl_config(tmp_path):
    config_path = tmp_path / "bandit.yaml"
    config_path.write_text(yaml.safe_dump({
        "kind": "rl", "name": "tiny-bandit", "env": {"name": "bandit", "arms": 3, "horizon": 3},
        "policy": {"hidden": []}, "learner": {"inner_lr": 1.0, "episodes_per_task": 4},
        "train": {"steps": 3, "meta_batch": 2, "log_every": 1},
        "eval": {"tasks": 6, "episodes_per_task": 4, "steps": 2, "step_sizes": [1.0, 1.0]}}))
    runner = CliRunner()
    out = tmp_path / "run"
    result = runner.invoke(main, ["train", str(config_path), "train.steps=2", "--out", str(out),
                                  "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "trained tiny-bandit: 2 steps" in result.output and "steps 2:" in result.output
    result = runner.invoke(main, ["eval", str(out), "--episodes", "10", "--no-progress"])
    assert result.exit_code == 0, result.output
    written = json.loads((out / "eval_rl.json").read_text())
    assert written["tasks"] == 10 and written["step"] == 2
    assert written["command"].startswith("attnmeta ")   # the command line (here pytest's argv)
    # options of episodes of classes are refused in one line, the transductive rule included
    for option in ("--one-to-one", "--within-alphabet"):
        one_line_error(["eval", out, option, "--no-progress"],
                       f"{option}: a meta-RL run (kind: rl) has no episodes of classes")


@pytest.mark.parametrize("override, message", [
    ("env.horizon=0", "config key 'env.horizon' is 0: expected a value >= 1"),
    ("learner.nmae=maml", "unknown config key 'learner.nmae'"),
    ("learner.name=reptile", "config key 'learner.name' is 'reptile'"),
    ("learner.name=incontext", "expected 'attention' for learner.name='incontext'"),
    ("train.threads=-1", "config key 'train.threads' is -1"),
])
def test_bad_config_values_give_one_line_errors(tmp_path, override, message):
    one_line_error(["train", "configs/rl/maml_nav2d.yaml", override, "--out", tmp_path / "x",
                    "--no-progress"], message)
    assert not (tmp_path / "x").exists()


def test_a_task_family_registered_after_import_is_accepted_by_the_config_check():
    """env.name's choices are the registry's names when a config is checked, not those it
    held when the schema was imported."""
    from attnmeta.rl.navigation import Navigation2D
    from attnmeta.rl.registry import TASK_FAMILIES, register_task_family

    config = tiny()
    config["env"]["name"] = "late-navigation"
    with pytest.raises(ConfigError, match="config key 'env.name' is 'late-navigation'"):
        rl_config_from_dict(config)
    register_task_family("late-navigation", lambda env: Navigation2D(env.horizon))
    try:
        assert rl_config_from_dict(config).env.name == "late-navigation"
        assert build_family(rl_config_from_dict(config)).horizon == 5
    finally:
        TASK_FAMILIES.pop("late-navigation")


def test_a_resume_may_change_the_threads_and_learning_rate(tmp_path):
    train_rl(rl_config_from_dict(tiny(steps=2)), tmp_path / "run", progress=False)
    changed = tiny(steps=4)
    changed["train"].update(threads=2, lr=0.005)
    resumed = train_rl(rl_config_from_dict(changed), tmp_path / "run", resume=True,
                       progress=False)
    assert resumed.resume_changes == {"train.lr": [0.01, 0.005], "train.steps": [2, 4],
                                         "train.threads": [1, 2]}


def test_every_shipped_config_loads():
    for path in sorted(Path("configs/rl").glob("*.yaml")):
        config = load_rl_config(path)
        assert config.name == path.stem, path
    with pytest.raises(ConfigError, match="eval.step_sizes"):
        load_rl_config("configs/rl/maml_nav2d.yaml", ["eval.steps=4"])


def test_the_shared_training_loop_accepts_rl_batches_in_backward_chunks():
    """attnmeta.train.meta_train may split a meta-batch (train.backward_chunk); a TaskBatch
    slices by tasks and each chunk samples its own rollouts."""
    import torch

    from attnmeta.runs.rl import build_learner
    from attnmeta.train import meta_train

    config = rl_config_from_dict({**tiny(), "env": {"name": "bandit", "arms": 3, "horizon": 2}})
    torch.manual_seed(0)
    learner = build_learner(config)
    before = [p.detach().clone() for p in learner.parameters()]
    batches = list(training_batches(config, learner.family, 0))
    assert batches[0].num_tasks == 2 and batches[0].slice(1, 2).tasks.equal(batches[0].tasks[1:])
    history = meta_train(learner, batches, torch.optim.Adam(learner.parameters(), 0.01), steps=4,
                         log_every=2, progress=False, backward_chunk=1)
    assert [h["step"] for h in history] == [2, 4] and "return_after" in history[0]
    assert any(not p.equal(b) for p, b in zip(learner.parameters(), before))
