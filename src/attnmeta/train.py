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
) -> list[dict[str, float]]:
    """Run ``steps - start_step`` outer steps: ``learner.training_step`` -> backward -> step.

    ``batches`` yields the meta-batch of each step, already positioned at ``start_step``
    (for exact resumption the caller builds it from the step index). ``on_log`` receives
    ``(step, mean metrics since the last log)``; ``on_step_end(step)`` runs after each
    optimiser step (checkpointing hooks in here). Returns the logged metrics.

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
        output = learner.training_step(batch)
        # Every rank must agree to stop, or the others would wait forever in the all-reduce.
        if any_rank(not math.isfinite(output.loss.item())):
            raise NonFiniteLossError(
                f"meta-loss is {output.loss.item()} at step {step}: expected a finite value "
                "(lower the outer or inner learning rate, or set grad_clip)"
            )
        optimizer.zero_grad(set_to_none=True)
        output.loss.backward()
        average_gradients(learner)
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(learner.parameters(), grad_clip)
        optimizer.step()
        for name, value in output.metrics.items():
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
