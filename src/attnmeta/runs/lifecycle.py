"""The training lifecycle every run kind shares, in the folder the run owns.

:func:`train_in_folder` claims the folder (:class:`~attnmeta.runs.folder.RunFolder`),
picks the newest valid checkpoint (falling back over corrupt ones, refusing a folder that
holds only damaged ones), allows or refuses a resume by the kind's rule of which keys may
change (recorded in the log when they do), builds the run's objects only then, saves the
config, and runs the one training loop (:func:`attnmeta.train.meta_train`) with the
learning-rate schedule, checkpoints on time, each evaluation after the checkpoint it
follows (and never moving the training RNG), and the training-time budget.

Model selection (``train.select: best``): an evaluation that beats every earlier one makes
its step the selected one; that step is checkpointed (if it was not due anyway), kept from
pruning, and named in every later checkpoint's record as ``"selected"``. An evaluation's
step is checkpointed after it there (with what it selected), so a resumed run selects
exactly what an unbroken one does. :func:`attnmeta.runs.folder.read_run` reads a
run folder as its selected checkpoint.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from attnmeta.checkpoint import (checkpoint_name, find_latest_checkpoint, load_checkpoint,
                                 read_checkpoint_record, save_checkpoint)
from attnmeta.distributed import DistributedContext, any_rank, broadcast_parameters
from attnmeta.errors import ConfigError
from attnmeta.learners import MetaLearner
from attnmeta.runs.config import config_from_dict, config_to_dict, flatten
from attnmeta.runs.folder import RunError, RunFolder, RunLog
from attnmeta.runs.results import TrainResult
from attnmeta.threads import choose_threads
from attnmeta.train import meta_train

__all__ = ["TrainingPlan", "train_in_folder", "set_threads", "RESUMABLE", "RESUMABLE_CLASSES"]

logger = logging.getLogger(__name__)

# Config keys a resume of any kind may change: budgets, logging, threads, the evaluation,
# and the outer step size and clipping (what a NaN error advises to change).
RESUMABLE = ("train.steps", "train.log_every", "train.checkpoint_every", "train.keep_checkpoints",
             "train.max_minutes", "train.threads", "train.lr", "train.grad_clip", "eval.")
# ... and of a run over classes (episodic, pretrain): the backward's chunks, the schedule,
# the in-training evaluation and where the data is
RESUMABLE_CLASSES = RESUMABLE + (
    "train.backward_chunk", "train.eval_every", "train.eval_episodes", "train.eval_split",
    "train.lr_schedule", "train.lr_decay_every", "data.root", "data.workers")


def thread_count(value: str) -> int:
    """``attnmeta train --threads``: a count of at least 1, or ``auto``: the cores no other
    process is using now (:func:`attnmeta.threads.choose_threads`)."""
    if value == "auto":
        return choose_threads(0, "large")
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"--threads {value!r}: expected a whole number of at least 1, or auto")
    return int(value)


def set_threads(threads: int) -> None:
    """``train.threads`` of any run kind: torch's intra-op threads for this process (0: leave
    torch's default)."""
    if threads:
        torch.set_num_threads(threads)


class _BudgetReached(Exception):
    """Internal: the training-time budget is spent (a checkpoint has been written)."""


@dataclass
class TrainingPlan:
    """What a run kind hands to :func:`train_in_folder`."""

    learner: MetaLearner
    optimizer: torch.optim.Optimizer
    batches: Callable[[int], Iterable]          # start step -> the meta-batches from there
    steps: int
    train: Any                                  # the config's train section
    learning_rate: Callable[[int], float] | None = None  # step -> outer lr
    evaluate: Callable[[], dict[str, float]] | None = None  # scalars to log
    eval_every: int = 0
    select_metric: str | None = None            # a scalar of evaluate() to maximise: the
                                                # checkpoint where it peaked is the run's model
    backward_chunk: int = 0                     # see attnmeta.train.meta_train
    workers: int = 1
    precision: str = "float32"                  # of the training forward passes


def _resume_changes(saved: dict, current: dict, resumable: tuple[str, ...], where: Path
                    ) -> dict[str, list]:
    # A key added to attnmeta after the run was made is absent from its saved config and
    # means that key's default: compare the saved config with its defaults filled in.
    try:
        saved = config_to_dict(config_from_dict(saved, saved=True))
    except ValueError:
        pass  # compared as it is: the difference is then named below
    old, new = flatten(saved), flatten(current)
    changed = {k: [old.get(k), new.get(k)] for k in sorted(set(old) | set(new))
               if old.get(k) != new.get(k)}
    refused = [k for k in changed if not k.startswith(resumable)]
    if refused:
        shown = ", ".join(f"{k}: {changed[k][0]!r} -> {changed[k][1]!r}" for k in refused[:4])
        raise RunError(f"cannot resume {where}: the config differs from the checkpoint's "
                       f"({shown}); expected only {', '.join(resumable)} to change (or a new "
                       "--out folder)")
    return changed


def _check_inputs(saved: dict, current: dict, where: Path) -> None:
    differ = [k for k in sorted(set(saved) | set(current)) if saved.get(k) != current.get(k)]
    if differ:
        shown = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in differ[:3])
        raise RunError(f"cannot resume {where}: it was built from other inputs than this run "
                       f"would be ({shown}); expected the same ones (or a new --out folder)")


def train_in_folder(path: Path, kind: str, config: dict[str, Any],
                    make_plan: Callable[[bool], TrainingPlan], resumable: tuple[str, ...],
                    context: DistributedContext,
                    resume: bool = False, progress: bool = True, command: str = "",
                    description: str = "meta-train",
                    on_step_end: Callable[[int], None] | None = None,
                    inputs: dict[str, Any] | None = None) -> TrainResult:
    """Meta-train in the run folder ``path`` (claimed first) what ``make_plan(resuming)``
    builds; resumable after a kill with the same result (every RNG state is in the
    checkpoint, and the batches depend only on the step). ``resumable``: the config keys
    (or key prefixes) a resume may change. A folder this call created is removed again if
    the run stops before its first checkpoint (bad data, say): nothing is left behind.
    ``inputs``: what the run is built from besides its config (JSON values: a pretrain run's
    class count, the checkpoint and encoder sha256 of ``model.init``), recorded in every
    checkpoint; a resume that finds others is refused."""
    created = not Path(path).exists()
    folder = RunFolder.claim(path, kind) if context.is_main else RunFolder(path, kind)
    try:
        start = _starting_checkpoint(folder, config, resumable, resume, inputs or {})
        return _Training(folder, config, make_plan, context, command, on_step_end,
                         inputs or {}, *start).run(progress, description)
    except BaseException:
        if created and context.is_main and find_latest_checkpoint(folder.path)[0] is None:
            folder.release()
            shutil.rmtree(folder.path, ignore_errors=True)
        raise
    finally:
        folder.release()


def _starting_checkpoint(folder: RunFolder, config: dict[str, Any],
                         resumable: tuple[str, ...], resume: bool, inputs: dict[str, Any]
                         ) -> tuple[Path | None, dict[str, list]]:
    """The checkpoint a run resumes from (None: a fresh start) and the config keys the
    resume changes; a :class:`RunError` where ``resume`` and the folder disagree."""
    existing, skipped = find_latest_checkpoint(folder.path)
    for line in skipped:
        logger.warning("%s", line)
    if existing is None and skipped:  # a fresh start would overwrite and prune them
        raise RunError(f"run folder {folder.path} holds only damaged checkpoints "
                       f"({len(skipped)}, warned above): expected a usable checkpoint to "
                       "--resume from; move them away or use a new --out folder")
    if existing is not None and not resume:
        raise RunError(f"run folder {folder.path} already holds checkpoints: pass --resume to "
                       "continue it, or --out NEW_FOLDER for a new run")
    if existing is None and resume:
        raise RunError(f"--resume: run folder {folder.path} holds no checkpoint to resume "
                       "from: expected checkpoints/step_*.json (run without --resume to start)")
    changed: dict[str, list] = {}
    if existing is not None:
        saved = read_checkpoint_record(existing)
        changed = _resume_changes(saved["config"], config, resumable, existing)
        _check_inputs(saved.get("inputs") or {}, inputs, existing)
    return existing, changed


class _Training:
    """One training call in a claimed folder: the plan built, restored from ``existing``
    (None: a fresh start), then :meth:`run`. Between steps, :meth:`step_end` sets the
    learning rate, checkpoints when due, evaluates (the selected checkpoint recorded in
    ``selection``) and stops at the time budget."""

    def __init__(self, folder: RunFolder, config: dict[str, Any],
                 make_plan: Callable[[bool], TrainingPlan], context: DistributedContext,
                 command: str, on_step_end: Callable[[int], None] | None,
                 inputs: dict[str, Any], existing: Path | None, changed: dict[str, list]
                 ) -> None:
        self.folder, self.config, self.context = folder, config, context
        self.command, self.on_step_end, self.inputs = command, on_step_end, inputs
        self.existing, self.changed = existing, changed
        self.plan = make_plan(existing is not None)
        self.start_step, elapsed = 0, 0.0
        # {"step", "checkpoint", "metric", "value"} of the best evaluation so far
        self.selection: dict[str, Any] = {}
        if existing is not None:
            record = load_checkpoint(existing, self.plan.learner, self.plan.optimizer,
                                     restore_rng=True)
            self.start_step, elapsed = record["step"], record.get("elapsed_s", 0.0)
            self.selection = dict(record.get("selected") or {})
            if self.start_step > self.plan.steps:
                raise RunError(f"cannot resume {folder.path} at step {self.start_step} with "
                               f"train.steps={self.plan.steps}: expected train.steps >= "
                               f"{self.start_step}")
        broadcast_parameters(self.plan.learner)
        if context.is_main:
            folder.write_config(config)
        self.log = RunLog(folder.path, enabled=context.is_main, resumed_at=self.start_step)
        if changed:
            self.log.write(self.start_step, elapsed, {"event": "resume", "changed": changed}, "run")
        self.clock_start = time.perf_counter() - elapsed  # moved on by evaluation time
        self.budget_s = 60 * self.plan.train.max_minutes
        self.stopped_at: int | None = None

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.clock_start

    def set_learning_rate(self, step: int) -> None:
        if self.plan.learning_rate is not None:
            for group in self.plan.optimizer.param_groups:
                group["lr"] = self.plan.learning_rate(step)

    def checkpoint(self, step: int) -> None:
        selection = self.selection
        save_checkpoint(self.folder.path, step, self.plan.learner, self.plan.optimizer,
                        self.config, keep=self.plan.train.keep_checkpoints,
                        extra={"elapsed_s": self.elapsed_s(), "command": self.command,
                               **({"inputs": self.inputs} if self.inputs else {}),
                               **({"selected": selection} if selection else {})},
                        protect=(selection["step"],) if selection else ())

    def step_end(self, step: int) -> None:
        plan = self.plan
        self.set_learning_rate(step)
        out_of_time = any_rank(self.budget_s > 0 and self.elapsed_s() >= self.budget_s)
        due = self.context.is_main and (step % plan.train.checkpoint_every == 0
                                        or step == plan.steps or out_of_time)
        evaluating = (plan.evaluate is not None and plan.eval_every > 0
                      and step % plan.eval_every == 0)
        # selecting: the step's checkpoint waits for its evaluation, whose result it records
        selecting = evaluating and plan.select_metric is not None
        if due and not selecting:
            self.checkpoint(step)  # before the evaluation: a failing one loses no training
        if evaluating:
            self.evaluate(step, due, selecting)
        if self.on_step_end is not None:
            self.on_step_end(step)
        if out_of_time and step < plan.steps:
            self.stopped_at = step
            raise _BudgetReached

    def evaluate(self, step: int, due: bool, selecting: bool) -> None:
        """The evaluation after ``step``, logged; with selection, the step's checkpoint
        (``due``, or made due by a new best) written after it, recording what it chose."""
        plan = self.plan
        began = time.perf_counter()
        try:
            with torch.random.fork_rng(devices=[]):  # never moves training's RNG
                scalars = plan.evaluate()
        except BaseException:
            if due and selecting:
                self.checkpoint(step)
            raise
        self.clock_start += time.perf_counter() - began  # eval time is not training time
        self.log.write(step, self.elapsed_s(), scalars, "eval")
        if selecting and scalars[plan.select_metric] > self.selection.get("value", -math.inf):
            self.selection.update(step=step, checkpoint=checkpoint_name(step),
                                  metric=plan.select_metric, value=scalars[plan.select_metric])
            due = self.context.is_main  # the selected model must be on disk
        if due and selecting:
            self.checkpoint(step)

    def run(self, progress: bool, description: str) -> TrainResult:
        """Train from the start step to ``plan.steps`` (or the budget)."""
        plan, train = self.plan, self.plan.train
        self.set_learning_rate(self.start_step)
        history: list[dict[str, float]] = []
        try:
            history = meta_train(
                plan.learner, plan.batches(self.start_step), plan.optimizer, plan.steps,
                start_step=self.start_step, grad_clip=train.grad_clip,
                log_every=train.log_every, progress=progress and self.context.is_main,
                description=description,
                on_log=lambda step, m: self.log.write(step, self.elapsed_s(), m, "train"),
                on_step_end=self.step_end, backward_chunk=plan.backward_chunk,
                workers=plan.workers, precision=plan.precision)
        except _BudgetReached:
            pass
        finally:
            self.log.close()
        if self.context.is_main and self.start_step == plan.steps and self.existing is None:
            self.checkpoint(plan.steps)  # steps = 0 (RL): the untrained policy, e.g. a baseline
        return TrainResult(
            str(self.folder.path), plan.steps if self.stopped_at is None else self.stopped_at,
            self.elapsed_s(), self.start_step, self.context.is_main, self.stopped_at is not None,
            self.changed, history)
