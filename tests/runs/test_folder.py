"""attnmeta.runs.folder: claiming a run folder (its marker and lock), its log, writing a
result, and reading a run back as its own kind only."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from attnmeta.runs import folder
from attnmeta.runs.folder import MARKER, RunError, RunFolder, RunLog, write_result
from attnmeta.runs.results import Result


def test_a_claim_marks_a_new_folder_and_a_second_one_names_the_holder(tmp_path):
    out = tmp_path / "run"
    with RunFolder.claim(out, "episodic"):
        assert json.loads((out / MARKER).read_text()) == {"kind": "episodic"}
        with pytest.raises(RunError, match=rf"is in use by another run \(process {os.getpid()} "):
            RunFolder.claim(out, "episodic")
    RunFolder.claim(out, "episodic").release()  # released: the same kind claims it again


def test_a_folder_that_is_not_a_run_of_its_kind_is_refused_untouched(tmp_path):
    theirs = tmp_path / "photos"
    theirs.mkdir()
    (theirs / "config.yaml").write_text("mine\n")
    with pytest.raises(RunError, match="is not empty and is not an attnmeta run"):
        RunFolder.claim(theirs, "episodic")
    assert [p.name for p in theirs.iterdir()] == ["config.yaml"]
    (theirs / MARKER).write_text(json.dumps({"kind": "rl"}))
    with pytest.raises(RunError, match="holds a rl run: expected a episodic run"):
        RunFolder.claim(theirs, "episodic")
    (theirs / MARKER).write_text("not json")
    with pytest.raises(RunError, match="run marker .* is unreadable"):
        RunFolder.claim(theirs, "episodic")
    with pytest.raises(RunError, match="is a file: expected a folder"):
        RunFolder.claim(theirs / "config.yaml", "episodic")


def test_a_resumed_log_drops_the_rows_after_its_step(tmp_path):
    log = RunLog(tmp_path, enabled=True)
    for step in (1, 2, 3):
        log.write(step, 0.5, {"loss": float(step)}, "train")
    log.close()
    RunLog(tmp_path, enabled=True, resumed_at=2).close()
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert rows == [{"step": 1, "elapsed_s": 0.5, "loss": 1.0},
                    {"step": 2, "elapsed_s": 0.5, "loss": 2.0}]


@dataclass
class Figures(Result):
    accuracy: float
    result_path: str
    written_to: str | None = None


def test_write_result_writes_the_json_or_returns_none(tmp_path, monkeypatch):
    path = str(tmp_path / "eval.json")
    assert write_result(Figures(0.5, path)) == path
    assert json.loads(Path(path).read_text()) == {"accuracy": 0.5, "result_path": path}

    def read_only(path, data):
        raise PermissionError(13, "Read-only file system", str(path))

    monkeypatch.setattr(folder, "atomic_write_bytes", read_only)
    assert write_result(Figures(0.75, path)) is None
    assert json.loads(Path(path).read_text())["accuracy"] == 0.5


def test_a_run_is_read_back_only_as_its_own_kind(tmp_path):
    from attnmeta.checkpoint import CheckpointError
    from attnmeta.runs.config import load_config
    from attnmeta.runs.rl import load_rl_run, train_rl
    from attnmeta.runs.episodic import load_run

    config = Path(__file__).parents[2] / "configs" / "rl" / "maml_bandit.yaml"
    train_rl(load_config(config, ["train.steps=1"]), tmp_path / "rl", progress=False)
    assert load_rl_run(tmp_path / "rl")[0].kind == "rl"
    with pytest.raises(CheckpointError, match=r"is of a meta-RL run \(kind: rl\): expected an "
                                              r"episodic run"):
        load_run(tmp_path / "rl")
