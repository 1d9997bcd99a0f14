"""Meta-RL runs: config -> learner, resumable training with checkpoints, seeded evaluation.

``attnmeta train configs/rl/maml_nav2d.yaml`` and ``attnmeta eval RUN_DIR`` call
:func:`train_from_cli` and :func:`evaluate_from_cli` when the config says ``kind: rl``.
A run folder holds ``config.yaml``, ``checkpoints/`` (atomic, with optimiser state),
``log.jsonl`` and TensorBoard scalars in ``tb/``, and after evaluation ``eval_rl.json``.

Reproducibility: the tasks and every rollout of meta-iteration ``s`` are drawn from
generators seeded by ``(config.seed, s)`` alone, so a resumed run repeats an
uninterrupted one bit for bit. Held-out evaluation tasks come from a separate seed stream
(``eval.seed``), disjoint from every training stream.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import yaml
from torch import nn

from attnmeta.checkpoint import (CheckpointError, latest_checkpoint, load_checkpoint,
                                 resolve_checkpoint, save_checkpoint)
from attnmeta.evaluate import summarize
# Shared with image runs: the same run log and the same rule for which keys may change on resume.
from attnmeta.runs.supervised import RunError, RunLog, check_resumable
from attnmeta.files import atomic_write_bytes
from attnmeta.rl.bandit import BanditTasks
from attnmeta.runs.rl_config import RLConfig, load_rl_config, rl_config_from_dict, rl_config_to_dict
from attnmeta.rl.maml_rl import PolicyGradientMAML, TaskBatch
from attnmeta.rl.navigation import Navigation2D
from attnmeta.rl.policies import HistoryAttentionPolicy, MLPPolicy
from attnmeta.rl.task_family import TaskFamily
from attnmeta.train import meta_train

__all__ = ["build_family", "build_policy", "build_learner", "stream_seed", "training_batches",
           "held_out_tasks", "train_rl", "evaluate_learner", "load_rl_run", "evaluate_rl_run",
           "is_rl_run", "train_from_cli", "evaluate_from_cli", "format_evaluation"]

# Seed streams: (seed, purpose, index) -> an independent generator seed.
TRAIN_TASKS, TRAIN_ROLLOUTS, EVAL_TASKS, EVAL_ROLLOUTS = 0, 1, 2, 3
EVAL_CHUNK = 25  # held-out tasks evaluated together; part of what fixes the eval rollouts


class _BudgetReached(Exception):
    """Internal: the training-time budget is spent (a checkpoint has been written)."""


def stream_seed(seed: int, purpose: int, index: int) -> int:
    """A 63-bit seed for item ``index`` of stream ``purpose`` (independent streams)."""
    sequence = np.random.SeedSequence(entropy=seed, spawn_key=(purpose, index))
    return int(sequence.generate_state(2, np.uint64)[0] >> np.uint64(1))


def build_family(config: RLConfig) -> TaskFamily:
    env = config.env
    if env.name == "navigation2d":
        return Navigation2D(env.horizon, env.goal_low, env.goal_high, env.max_speed,
                            env.goal_tolerance)
    return BanditTasks(env.arms, env.horizon, env.context_dim)


def build_policy(config: RLConfig, family: TaskFamily) -> nn.Module:
    spec = config.policy
    if spec.kind == "mlp":
        return MLPPolicy(family.observation_dim, family.action_dim, family.discrete,
                         hidden=spec.hidden, init_log_std=spec.init_log_std)
    return HistoryAttentionPolicy(family.observation_dim, family.action_dim, family.discrete,
                                  window=spec.window, d_model=spec.d_model, n_heads=spec.heads,
                                  hidden=spec.hidden, init_log_std=spec.init_log_std)


def build_learner(config: RLConfig) -> PolicyGradientMAML:
    """The configured learner; its weights are drawn from torch's global RNG."""
    family = build_family(config)
    spec = config.learner
    adapts = spec.name in ("maml", "fomaml")
    return PolicyGradientMAML(
        build_policy(config, family), family, inner_lr=spec.inner_lr,
        inner_steps=spec.inner_steps if adapts else 0, first_order=spec.name == "fomaml",
        episodes_per_task=spec.episodes_per_task,
        trial_episodes=spec.trial_episodes if spec.name == "incontext" else 1,
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


def _set_threads(config: RLConfig) -> None:
    if config.train.threads:
        torch.set_num_threads(config.train.threads)


def train_rl(config: RLConfig, run_dir: Path, resume: bool = False, progress: bool = True,
             command: str = "", on_step_end: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Meta-train as configured, checkpointing into ``run_dir``; resumable after a kill."""
    run_dir = Path(run_dir)
    config_dict = rl_config_to_dict(config)
    existing = latest_checkpoint(run_dir)
    if existing is not None and not resume:
        raise RunError(f"run folder {run_dir} already holds checkpoints: pass --resume to "
                       "continue it, or --out NEW_FOLDER for a new run")
    _set_threads(config)
    torch.manual_seed(config.seed)
    learner = build_learner(config)
    optimizer = torch.optim.Adam(learner.parameters(), lr=config.train.lr)
    start_step, elapsed = 0, 0.0
    if existing is not None:
        check_resumable(json.loads(existing.read_text())["config"], config_dict, existing)
        record = load_checkpoint(existing, learner, optimizer, restore_rng=True)
        start_step, elapsed = record["step"], record.get("elapsed_s", 0.0)
        if start_step > config.train.steps:
            raise RunError(f"cannot resume {run_dir} at step {start_step} with train.steps="
                           f"{config.train.steps}: expected train.steps >= {start_step}")
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(run_dir / "config.yaml", yaml.safe_dump(config_dict, sort_keys=False).encode())

    steps, budget_s = config.train.steps, 60 * config.train.max_minutes
    run_log = RunLog(run_dir, enabled=True)
    clock = {"start": time.perf_counter() - elapsed}
    stopped: dict[str, int] = {}

    def checkpoint(step: int) -> None:
        save_checkpoint(run_dir, step, learner, optimizer, config_dict,
                        keep=config.train.keep_checkpoints,
                        extra={"elapsed_s": time.perf_counter() - clock["start"],
                               "command": command})

    def log(step: int, metrics: dict[str, float]) -> None:
        run_log.write(step, time.perf_counter() - clock["start"], metrics, "train")

    def step_end(step: int) -> None:
        out_of_time = budget_s > 0 and time.perf_counter() - clock["start"] >= budget_s
        if step % config.train.checkpoint_every == 0 or step == steps or out_of_time:
            checkpoint(step)
        if on_step_end is not None:
            on_step_end(step)
        if out_of_time and step < steps:
            stopped["at"] = step
            raise _BudgetReached

    history: list[dict[str, float]] = []
    try:
        history = meta_train(learner, training_batches(config, learner.family, start_step),
                             optimizer, steps, start_step=start_step,
                             grad_clip=config.train.grad_clip, log_every=config.train.log_every,
                             progress=progress, description=config.name, on_log=log,
                             on_step_end=step_end)
    except _BudgetReached:
        pass
    finally:
        run_log.close()
    if start_step == steps and latest_checkpoint(run_dir) is None:
        checkpoint(steps)  # train.steps = 0: the untrained policy, e.g. the random baseline
    return {"run_dir": str(run_dir), "steps": stopped.get("at", steps), "resumed_from": start_step,
            "stopped_by_time_budget": bool(stopped),
            "train_seconds": time.perf_counter() - clock["start"], "history": history}


def evaluate_learner(learner: PolicyGradientMAML, config: RLConfig, tasks: int | None = None,
                     seed: int | None = None, progress: bool = False) -> dict[str, Any]:
    """Mean return per held-out task before and after each adaptation step (or, in
    context, on each episode of a trial), summarised as mean ± 95% CI over tasks."""
    evaluation = config.eval
    count = tasks or evaluation.tasks
    seed = evaluation.seed if seed is None else seed
    in_context = config.learner.name == "incontext"
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
    json_path = resolve_checkpoint(Path(path))
    try:
        config = rl_config_from_dict(json.loads(json_path.read_text())["config"])
    except (KeyError, json.JSONDecodeError) as error:
        raise CheckpointError(f"checkpoint {json_path} has no readable config ({error})") from None
    learner = build_learner(config)
    record = load_checkpoint(json_path, learner)
    record["path"] = str(json_path)
    return config, learner, record


def evaluate_rl_run(path: Path, tasks: int | None = None, seed: int | None = None,
                    command: str = "", progress: bool = False) -> dict[str, Any]:
    """Evaluate a run's latest checkpoint; writes ``<run>/eval_rl.json``."""
    config, learner, record = load_rl_run(path)
    _set_threads(config)
    result = {"command": command, "name": config.name, "checkpoint": record["path"],
              "step": record["step"], "train_seconds": record.get("elapsed_s"),
              **evaluate_learner(learner, config, tasks, seed, progress)}
    out = Path(record["path"]).parent.parent / "eval_rl.json"
    atomic_write_bytes(out, json.dumps(result, indent=1).encode())
    result["written_to"] = str(out)
    return result


def is_rl_run(path: Path) -> bool:
    """True when ``path`` (run folder or checkpoint) holds an RL run (config ``kind: rl``)."""
    try:
        record = json.loads(resolve_checkpoint(Path(path)).read_text())
    except (CheckpointError, OSError, json.JSONDecodeError):
        return False
    return isinstance(record.get("config"), dict) and record["config"].get("kind") == "rl"


def format_evaluation(result: dict[str, Any]) -> str:
    """One line: the return at each column, mean ± 95% CI."""
    label = "episode" if result["learner"] == "incontext" else "steps"
    columns = ", ".join(f"{label} {r['k'] + (1 if label == 'episode' else 0)}: "
                        f"{r['mean']:.2f} ± {r['ci95']:.2f}" for r in result["returns"])
    return (f"{result['name']} ({result['learner']}, {result['tasks']} held-out tasks, seed "
            f"{result['task_seed']}): average return {columns} -> {result['written_to']}")


def train_from_cli(config_path: Path, overrides: tuple[str, ...], out_dir: Path | None,
                   resume: bool, run_eval: bool, progress: bool, command: str) -> list[str]:
    """What ``attnmeta train`` does for an RL config; returns the lines to print."""
    config = load_rl_config(config_path, overrides)
    out_dir = out_dir or Path("runs") / config.name
    result = train_rl(config, out_dir, resume=resume, progress=progress, command=command)
    lines = [f"trained {config.name}: {result['steps']} steps in "
             f"{result['train_seconds']:.0f} s -> {out_dir}"]
    if run_eval:
        lines.append(format_evaluation(evaluate_rl_run(out_dir, command=command,
                                                       progress=progress)))
    return lines


def evaluate_from_cli(path: Path, tasks: int | None, seed: int | None, progress: bool,
                      command: str) -> str:
    """What ``attnmeta eval RUN`` does for an RL run (``--episodes`` = held-out tasks)."""
    return format_evaluation(evaluate_rl_run(path, tasks, seed, command, progress))
