"""Meta-RL runs: config -> learner, resumable training with checkpoints, seeded evaluation.

``attnmeta train configs/rl/maml_nav2d.yaml`` and ``attnmeta eval RUN_DIR`` call
:func:`train_rl` and :func:`evaluate_request` when the config says ``kind: rl`` (the kind's
registry entry, :mod:`attnmeta.runs.kinds`, registered at the bottom).
A run folder holds ``config.yaml``, ``checkpoints/`` (atomic, with optimiser state),
``log.jsonl`` and TensorBoard scalars in ``tb/``, and after evaluation ``eval_rl.json``.

Reproducibility: the tasks and every rollout of meta-iteration ``s`` are drawn from
generators seeded by ``(config.seed, s)`` alone, so a resumed run repeats an
uninterrupted one bit for bit. Held-out evaluation tasks come from a separate seed stream
(``eval.seed``), disjoint from every training stream.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from attnmeta.checkpoint import (load_checkpoint)
from attnmeta.distributed import DistributedContext
from attnmeta.metrics import summarize
from attnmeta.rl.maml_rl import PolicyGradientMAML, TaskBatch
from attnmeta.rl.registry import POLICIES, RL_LEARNERS, TASK_FAMILIES
from attnmeta.rl.task_family import TaskFamily
from attnmeta.runs.config import RLConfig, config_to_dict
from attnmeta.runs.evaluation import EvalRequest
from attnmeta.runs.folder import read_run, write_result
from attnmeta.runs.kinds import RunKind, register_run_kind
from attnmeta.runs.lifecycle import RESUMABLE, TrainingPlan, set_threads, train_in_folder
from attnmeta.runs.results import RLResult, TrainResult

__all__ = ["KIND", "build_family", "build_policy", "build_learner", "stream_seed",
           "training_batches", "held_out_tasks", "train_rl", "adaptation_returns",
           "load_rl_run", "evaluate_rl_run", "evaluate_request"]

KIND = "rl"

# Seed streams: (seed, purpose, index) -> an independent generator seed.
TRAIN_TASKS, TRAIN_ROLLOUTS, EVAL_TASKS, EVAL_ROLLOUTS = 0, 1, 2, 3
EVAL_CHUNK = 25  # held-out tasks evaluated together; part of what fixes the eval rollouts


def stream_seed(seed: int, purpose: int, index: int) -> int:
    """A 63-bit seed for item ``index`` of stream ``purpose`` (independent streams)."""
    sequence = np.random.SeedSequence(entropy=seed, spawn_key=(purpose, index))
    return int(sequence.generate_state(2, np.uint64)[0] >> np.uint64(1))


def build_family(config: RLConfig) -> TaskFamily:
    """The task family ``env.name`` registers (:data:`attnmeta.rl.registry.TASK_FAMILIES`)."""
    return TASK_FAMILIES[config.env.name](config.env)


def build_policy(config: RLConfig, family: TaskFamily) -> nn.Module:
    """The policy ``policy.kind`` registers (:data:`attnmeta.rl.registry.POLICIES`)."""
    return POLICIES[config.policy.kind].build(config.policy, family)


def build_learner(config: RLConfig) -> PolicyGradientMAML:
    """The configured learner, adapting as its entry declares
    (:data:`attnmeta.rl.registry.RL_LEARNERS`); its weights are drawn from torch's global
    RNG."""
    family = build_family(config)
    spec = config.learner
    entry = RL_LEARNERS[spec.name]
    return PolicyGradientMAML(
        build_policy(config, family), family, inner_lr=spec.inner_lr,
        inner_steps=spec.inner_steps if entry.adapts_by_gradient else 0,
        first_order=entry.first_order, episodes_per_task=spec.episodes_per_task,
        trial_episodes=spec.trial_episodes if entry.in_context else 1,
        gamma=spec.gamma, baseline=spec.baseline,
        normalize_advantages=spec.normalize_advantages, estimator=spec.estimator)


def training_batches(config: RLConfig, family: TaskFamily, start_step: int) -> Iterator[TaskBatch]:
    """Meta-batch of step ``s``: tasks and rollout seed from ``(config.seed, s)`` only."""
    for step in range(start_step, config.train.steps):
        generator = torch.Generator().manual_seed(stream_seed(config.seed, TRAIN_TASKS, step))
        yield TaskBatch(family.sample_tasks(config.train.meta_batch, generator),
                        stream_seed(config.seed, TRAIN_ROLLOUTS, step))


def held_out_tasks(family: TaskFamily, count: int, seed: int) -> torch.Tensor:
    """``count`` evaluation tasks from the evaluation stream of ``seed``."""
    generator = torch.Generator().manual_seed(stream_seed(seed, EVAL_TASKS, 0))
    return family.sample_tasks(count, generator)


def train_rl(config: RLConfig, run_dir: Path, resume: bool = False, progress: bool = True,
             command: str = "", on_step_end: Callable[[int], None] | None = None,
             will_evaluate: bool = True) -> TrainResult:
    """Meta-train as configured, checkpointing into ``run_dir``; resumable after a kill.
    ``will_evaluate`` changes nothing: the held-out tasks are drawn, not read, so there is
    nothing to check before training."""
    set_threads(config.train.threads)

    def plan(resuming: bool) -> TrainingPlan:
        torch.manual_seed(config.seed)
        learner = build_learner(config)
        optimizer = torch.optim.Adam(learner.parameters(), lr=config.train.lr)
        return TrainingPlan(learner, optimizer,
                            lambda start: training_batches(config, learner.family, start),
                            config.train.steps, config.train,
                            learning_rate=lambda step: config.train.lr)

    return train_in_folder(Path(run_dir), KIND, config_to_dict(config), plan, RESUMABLE,
                           DistributedContext(), resume=resume, progress=progress,
                           command=command, description=config.name, on_step_end=on_step_end)


def adaptation_returns(learner: PolicyGradientMAML, config: RLConfig, tasks: int | None = None,
                     seed: int | None = None, progress: bool = False) -> dict[str, Any]:
    """Mean return per held-out task before and after each adaptation step (or, in
    context, on each episode of a trial), summarised as mean ± 95% CI over tasks."""
    evaluation = config.eval
    count = tasks or evaluation.tasks
    seed = evaluation.seed if seed is None else seed
    in_context = RL_LEARNERS[config.learner.name].in_context
    held_out = held_out_tasks(learner.family, count, seed)
    chunks = range(0, count, EVAL_CHUNK)
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc=f"eval {config.name}", dynamic_ncols=True)
    was_training = learner.training
    learner.eval()
    per_task = []
    try:
        for start in chunks:
            generator = torch.Generator().manual_seed(
                stream_seed(seed, EVAL_ROLLOUTS, start // EVAL_CHUNK))
            batch = held_out[start:start + EVAL_CHUNK]
            if in_context:
                per_task.append(learner.trial_returns(batch, evaluation.steps + 1,
                                                      evaluation.episodes_per_task, generator))
            else:
                per_task.append(learner.adaptation_returns(
                    batch, evaluation.step_sizes[:evaluation.steps],
                    evaluation.episodes_per_task, generator))
    finally:
        learner.train(was_training)
    values = torch.cat(per_task).double().numpy()                    # [tasks, 1 + steps]
    summaries = [summarize(values[:, k]) for k in range(values.shape[1])]
    return {
        "learner": config.learner.name, "policy": config.policy.kind, "env": config.env.name,
        "tasks": count, "task_seed": seed, "episodes_per_task": evaluation.episodes_per_task,
        "step_sizes": [] if in_context else evaluation.step_sizes[:evaluation.steps],
        "columns": ("episode k+1 of a trial, history carried, no gradient step" if in_context
                    else "return after k policy-gradient steps"),
        "returns": [{"k": k, **s.as_dict()} for k, s in enumerate(summaries)],
        "per_task": values.tolist(),
    }


def load_rl_run(path: Path) -> tuple[RLConfig, PolicyGradientMAML, dict[str, Any]]:
    """(config, learner with the checkpoint's weights, checkpoint record) of an RL run."""
    json_path, _, config = read_run(path, KIND)
    learner = build_learner(config)
    record = load_checkpoint(json_path, learner)
    record["path"] = str(json_path)
    return config, learner, record


def evaluate_rl_run(path: Path, tasks: int | None = None, seed: int | None = None,
                    command: str = "", progress: bool = False, save: bool = True
                    ) -> RLResult:
    """Evaluate a run's latest checkpoint; with ``save`` writes ``<run>/eval_rl.json``."""
    config, learner, record = load_rl_run(path)
    set_threads(config.train.threads)
    result = RLResult(command=command, name=config.name, checkpoint=record["path"],
                      step=record["step"], train_seconds=record.get("elapsed_s"),
                      **adaptation_returns(learner, config, tasks, seed, progress),
                      result_path=str(Path(record["path"]).parent.parent / "eval_rl.json"))
    result.written_to = write_result(result) if save else None
    return result


def evaluate_request(request: EvalRequest) -> RLResult:
    """``attnmeta eval`` of a meta-RL run: ``request.episodes`` held-out tasks of
    ``request.seed``; the options of episodes of classes are refused."""
    request.refuse(("split", "n_way", "k_shot", "data_root", "oos", "within_alphabet",
                    "one_to_one", "finetune_steps"),
                   "a meta-RL run (kind: rl) has no episodes of classes; "
                   "expected only --episodes and --seed")
    return evaluate_rl_run(request.checkpoint, request.episodes, request.seed,
                           request.command, request.progress, request.save)


register_run_kind(RunKind(KIND, RLConfig, "a meta-RL run (kind: rl)", train_rl,
                          evaluate_request, reads_data=False, resumable=RESUMABLE))
