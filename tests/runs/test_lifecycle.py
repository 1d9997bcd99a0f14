"""attnmeta.runs.lifecycle: the training lifecycle every run kind shares (resume rules and
the changes a resume records, the time budget, the checkpoint before each evaluation, and
``--threads``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attnmeta.errors import ConfigError
from attnmeta.runs import lifecycle
from attnmeta.runs.episodic import RunError, train_run
from attnmeta.runs.lifecycle import thread_count
from support import make_image_folder, one_line_error, tiny_config


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("images"))


def test_thread_count_reads_a_whole_number_or_auto(monkeypatch):
    assert thread_count("3") == 3
    monkeypatch.setattr(lifecycle, "choose_threads", lambda threads, workload: 7)
    assert thread_count("auto") == 7
    with pytest.raises(ConfigError, match=r"^--threads '2.5': expected a whole number of at "
                                          r"least 1, or auto$"):
        thread_count("2.5")

def test_existing_run_needs_resume_and_the_same_config(tmp_path, data_root):
    config = tiny_config(data_root, "protonet", steps=3)
    train_run(config, tmp_path / "run", progress=False)
    with pytest.raises(RunError, match="already holds checkpoints: pass --resume"):
        train_run(config, tmp_path / "run", progress=False)
    changed = tiny_config(data_root, "protonet", steps=3)
    changed.learner.distance = "cosine"
    with pytest.raises(RunError, match=r"learner.distance: 'sqeuclidean' -> 'cosine'"):
        train_run(changed, tmp_path / "run", resume=True, progress=False)
    longer = tiny_config(data_root, "protonet", steps=6)  # more steps is a valid resume
    assert train_run(longer, tmp_path / "run", resume=True, progress=False).resumed_from == 3


def test_a_key_added_after_a_run_was_made_does_not_block_its_resume(tmp_path):
    """A saved config without a key that attnmeta added later means that key's default."""
    from attnmeta.runs.config import config_to_dict
    from attnmeta.runs.lifecycle import _resume_changes

    current = config_to_dict(tiny_config(tmp_path))
    saved = json.loads(json.dumps(current))
    del saved["data"]["augment"], saved["model"]["pretrained_path"]
    assert _resume_changes(saved, current, ("train.steps",), tmp_path) == {}
    saved["data"]["image_size"] = 20  # a real change is still refused, named
    with pytest.raises(RunError, match="data.image_size: 20 -> 16"):
        _resume_changes(saved, current, ("train.steps",), tmp_path)


def test_time_budget_stops_with_a_checkpoint(tmp_path, data_root):
    config = tiny_config(data_root, "protonet", steps=50)
    config.train.max_minutes = 1e-9  # spent after the first step
    result = train_run(config, tmp_path / "run", progress=False)
    assert result.stopped_by_time_budget and result.steps == 1
    assert [p.name for p in (tmp_path / "run/checkpoints").glob("*.json")] == ["step_0000001.json"]


def test_the_checkpoint_is_written_before_the_evaluation_that_follows_it(
        tmp_path, data_root, monkeypatch):
    import attnmeta.runs.evaluation as evaluation

    def failing(*args, **kwargs):
        raise RuntimeError("evaluation failed")

    monkeypatch.setattr(evaluation, "episode_accuracies", failing)
    with pytest.raises(RuntimeError):
        train_run(tiny_config(data_root, "protonet"), tmp_path / "run", progress=False)
    assert [p.name for p in (tmp_path / "run/checkpoints").glob("*.json")] == ["step_0000003.json"]


def test_resume_logs_no_duplicate_rows_and_may_change_the_learning_rate(tmp_path, data_root):
    config = tiny_config(data_root, "protonet", steps=6)

    def stop_at_5(step: int) -> None:
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(config, tmp_path / "run", progress=False, on_step_end=stop_at_5)
    config.train.lr, config.train.grad_clip = 0.005, 1.0
    result = train_run(config, tmp_path / "run", resume=True, progress=False)
    assert result.resume_changes == {"train.grad_clip": [None, 1.0], "train.lr": [0.01, 0.005]}
    rows = [json.loads(line) for line in (tmp_path / "run/log.jsonl").read_text().splitlines()]
    train_steps = [row["step"] for row in rows if "loss" in row]
    assert train_steps == [2, 4, 6]
    assert [row["changed"] for row in rows if row.get("event") == "resume"] == [
        result.resume_changes]


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_train_threads_option_refuses_a_bad_count(tmp_path, value):
    one_line_error(["train", tmp_path / "none.yaml", "--threads", value],
                   f"--threads {value!r}: expected a whole number of at least 1, or auto")
