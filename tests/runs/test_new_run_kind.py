"""A new run kind is one module and one registration line: a kind defined here (its own
schema, a train that writes into the run folder, an evaluate that returns a result) runs
through ``attnmeta train`` and ``attnmeta eval`` with nothing else changed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from click.testing import CliRunner

from attnmeta.checkpoint import save_checkpoint
from attnmeta.cli import main
from attnmeta.runs.config import config_to_dict
from attnmeta.runs.evaluation import EvalRequest
from attnmeta.runs.folder import RunFolder, run_kind
from attnmeta.runs import kinds
from attnmeta.runs.kinds import RunKind, register_run_kind
from attnmeta.runs.results import Result, TrainResult
from attnmeta.runs.schema import PLAIN_NAME, setting


@dataclass
class CountSection:
    to: int = setting(3, at_least=1)


@dataclass
class CountConfig:
    """A run that counts to ``count.to``."""

    kind: str = setting("count", choices=("count",))
    name: str = setting("count", pattern=PLAIN_NAME)
    count: CountSection = setting(factory=CountSection)

    def cross_problems(self) -> list[tuple[str, Any, str]]:
        return []


@dataclass
class CountResult(Result):
    counted: int
    result_path: str
    written_to: str | None = None

    def line(self) -> str:
        return f"counted to {self.counted}"


def train_count(config: CountConfig, run_dir: Path, resume: bool = False, progress: bool = True,
                command: str = "", will_evaluate: bool = True) -> TrainResult:
    with RunFolder.claim(run_dir, "count") as folder:
        (folder.path / "counted.txt").write_text(" ".join(map(str, range(1, config.count.to + 1))))
        # its checkpoint's config names the run's kind, as every kind's does
        save_checkpoint(folder.path, config.count.to, torch.nn.Linear(1, 1), None,
                        config_to_dict(config))
    return TrainResult(str(run_dir), config.count.to, 0.0)


def evaluate_count(request: EvalRequest) -> CountResult:
    request.refuse(("split", "n_way", "k_shot", "oos"), "a count run has no episodes")
    counted = len((Path(request.checkpoint) / "counted.txt").read_text().split())
    return CountResult(counted, str(Path(request.checkpoint) / "eval_count.json"))


@pytest.fixture
def count_kind(monkeypatch):
    """The kind registered as a module of its own would be, in one line (into a copy of the
    registry, so that the other tests see only the built-in kinds)."""
    kinds.run_kinds()  # the built-ins first
    monkeypatch.setattr(kinds, "_KINDS", dict(kinds._KINDS))
    register_run_kind(RunKind("count", CountConfig, "a count run (kind: count)", train_count,
                              evaluate_count, reads_data=False))


def test_a_new_run_kind_trains_and_evaluates_through_the_cli(tmp_path, count_kind):
    config = tmp_path / "count.yaml"
    config.write_text(yaml.safe_dump({"kind": "count", "name": "five", "count": {"to": 4}}))
    out = tmp_path / "run"
    runner = CliRunner()
    trained = runner.invoke(main, ["train", str(config), "count.to=5", "--out", str(out),
                                   "--no-eval"])
    assert trained.exit_code == 0, trained.output
    assert trained.output.splitlines() == [f"trained five: 5 steps in 0 s -> {out}"]
    assert (out / "counted.txt").read_text() == "1 2 3 4 5"
    assert run_kind(out).name == "count"

    evaluated = runner.invoke(main, ["eval", str(out)])
    assert evaluated.exit_code == 0, evaluated.output
    assert evaluated.output.splitlines() == ["counted to 5", f"wrote {out / 'eval_count.json'}"]
    assert json.loads((out / "eval_count.json").read_text()) == {
        "counted": 5, "result_path": str(out / "eval_count.json")}

    refused = runner.invoke(main, ["eval", str(out), "--n-way", "3"])
    assert refused.exit_code == 1
    assert refused.output.strip() == "Error: --n-way 3: a count run has no episodes"
    # and it reads no data set
    no_data = runner.invoke(main, ["train", str(config), "--out", str(tmp_path / "other"),
                                   "--data-root", str(tmp_path)])
    assert "Error: --data-root" in no_data.output and "a count run" in no_data.output
