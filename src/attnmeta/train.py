"""The one meta-training loop every learner uses."""

from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
from tqdm.auto import tqdm

from attnmeta.distributed import any_rank, average_gradients
from attnmeta.learners.base import MetaLearner
from attnmeta.tasks.episode import Episode

__all__ = ["meta_train", "NonFiniteLossError"]


class NonFiniteLossError(FloatingPointError):
    """Raised when the meta-loss becomes NaN or infinite; the parameters are left untouched."""


def accumulate_meta_gradient(learner: MetaLearner, batch: Episode, backward_chunk: int,
                             step: int) -> dict[str, float]:
    """Back-propagate the meta-loss of ``batch`` (in chunks of ``backward_chunk`` tasks if
    > 0) into the learner's ``.grad``; returns the task-weighted mean metrics. Raises
    :class:`NonFiniteLossError` before any backward if a chunk's loss is not finite."""
    tasks = batch.num_tasks
    size = backward_chunk if 0 < backward_chunk < tasks else tasks
    metrics: dict[str, float] = {}
    for start in range(0, tasks, size):
        chunk = batch if size == tasks else batch.slice(start, min(start + size, tasks))
        output = learner.training_step(chunk)
        # Every rank must agree to stop, or the others would wait forever in the all-reduce.
        if any_rank(not math.isfinite(output.loss.item())):
            raise NonFiniteLossError(
                f"meta-loss is {output.loss.item()} at step {step}: expected a finite value "
                "(lower the outer or inner learning rate, or set grad_clip)"
            )
        share = chunk.num_tasks / tasks
        (output.loss * share if share != 1 else output.loss).backward()
        for name, value in output.metrics.items():
            metrics[name] = metrics.get(name, 0.0) + share * value
    return metrics


def meta_train(
    learner: MetaLearner,
    batches: Iterable[Episode],
    optimizer: torch.optim.Optimizer,
    steps: int,
    start_step: int = 0,
    grad_clip: float | None = None,
    log_every: int = 10,
    progress: bool = True,
    description: str = "meta-train",
    on_log: Callable[[int, dict[str, float]], None] | None = None,
    on_step_end: Callable[[int], None] | None = None,
    backward_chunk: int = 0,
) -> list[dict[str, float]]:
    """Run ``steps - start_step`` outer steps: ``learner.training_step`` -> backward -> step.

    ``batches`` yields the meta-batch of each step, already positioned at ``start_step``
    (for exact resumption the caller builds it from the step index). ``on_log`` receives
    ``(step, mean metrics since the last log)``; ``on_step_end(step)`` runs after each
    optimiser step (checkpointing hooks in here). Returns the logged metrics.

    ``backward_chunk > 0`` runs the meta-batch through ``training_step`` and ``backward``
    that many tasks at a time and sums the chunks' gradients, weighted by their share of the
    tasks: the same meta-gradient (for losses that are means over tasks) with the memory of
    one chunk — second-order MAML keeps every task's unrolled graph alive until backward.

    Under ``torch.distributed`` each rank passes its shard of every meta-batch; the
    meta-gradients are averaged across ranks before the optimiser step.
    """
    history: list[dict[str, float]] = []
    window: dict[str, list[float]] = {}
    bar = tqdm(total=steps, initial=start_step, desc=description, disable=not progress,
               dynamic_ncols=True, smoothing=0.05)
    learner.train()
    batch_iter = iter(batches)
    for step in range(start_step, steps):
        batch = next(batch_iter)
        optimizer.zero_grad(set_to_none=True)
        metrics = accumulate_meta_gradient(learner, batch, backward_chunk, step)
        average_gradients(learner)
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(learner.parameters(), grad_clip)
        optimizer.step()
        for name, value in metrics.items():
            window.setdefault(name, []).append(value)
        bar.update(1)
        if (step + 1) % log_every == 0 or step + 1 == steps:
            means = {name: sum(v) / len(v) for name, v in window.items()}
            window.clear()
            history.append({"step": step + 1, **means})
            bar.set_postfix({k: f"{v:.4g}" for k, v in means.items()}, refresh=False)
            if on_log is not None:
                on_log(step + 1, means)
        if on_step_end is not None:
            on_step_end(step + 1)
    bar.close()
    return history
