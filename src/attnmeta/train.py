"""The one meta-training loop every learner uses."""

from __future__ import annotations

import copy
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Protocol

import torch
from tqdm.auto import tqdm

from attnmeta.distributed import any_rank, average_gradients
from attnmeta.errors import ConfigError, DivergedError
from attnmeta.learners.base import MetaLearner
from attnmeta.learners.precision import PRECISIONS, forward_precision

__all__ = ["meta_train", "MetaBatch", "NonFiniteLossError", "PRECISIONS", "forward_precision"]


class NonFiniteLossError(DivergedError):
    """Raised when the meta-loss, or a parameter or buffer after a step, becomes NaN or
    infinite. A loss is checked before the step (the parameters are left untouched); the
    parameters after it, before any checkpoint of that step is written, so the run's last
    checkpoint stays the last finite one."""


class MetaBatch(Protocol):
    """What the loop splits into chunks: ``len(batch)`` units (an episode batch's tasks, a
    :class:`~attnmeta.learners.ClassBatch`'s examples, an RL batch's tasks), of which
    ``batch.slice(start, stop)`` is a smaller batch; a chunk is weighted by its share."""

    def __len__(self) -> int: ...

    def slice(self, start: int, stop: int) -> "MetaBatch": ...


def accumulate_meta_gradient(learner: MetaLearner, batch: MetaBatch, backward_chunk: int,
                             step: int, workers: int = 1, precision: str = "float32"
                             ) -> dict[str, float]:
    """Back-propagate the meta-loss of ``batch`` (in chunks of ``backward_chunk`` tasks if
    > 0) into the learner's ``.grad``; returns the task-weighted mean metrics. Raises
    :class:`NonFiniteLossError`, leaving ``.grad`` untouched, if a chunk's loss is not finite.

    ``workers > 1`` runs the chunks (one task each unless ``backward_chunk`` says
    otherwise) on that many threads, each with one intra-op thread (see
    :func:`_gradients_in_threads`); the result equals the serial one to round-off.
    ``precision``: that of the forward passes (:func:`forward_precision`).
    """
    if workers < 1:
        raise ValueError(f"train.workers={workers}: expected 1 (no threads) or more")
    tasks = len(batch)  # tasks, or a ClassBatch's examples
    if 0 < backward_chunk < tasks:
        size = backward_chunk
    else:  # worker threads need chunks to share; one task each keeps the least memory
        size = 1 if workers > 1 else tasks
    chunks = [(start, min(start + size, tasks)) for start in range(0, tasks, size)]
    if workers > 1 and len(chunks) > 1:
        return _gradients_in_threads(learner, batch, chunks, step, workers, precision)
    metrics: dict[str, float] = {}
    for start, stop in chunks:
        chunk = batch if size == tasks else batch.slice(start, stop)
        with forward_precision(learner, precision):
            output = learner.training_step(chunk)
        _check_finite([output.loss.item()], step)
        share = len(chunk) / tasks
        (output.loss * share if share != 1 else output.loss).backward()
        for name, value in output.metrics.items():
            metrics[name] = metrics.get(name, 0.0) + share * value
    return metrics


def _check_finite(losses: list[float], step: int) -> None:
    # Every rank must agree to stop, or the others would wait forever in the all-reduce.
    bad = next((loss for loss in losses if not math.isfinite(loss)), None)
    if any_rank(bad is not None):
        raise NonFiniteLossError(
            f"meta-loss is {bad if bad is not None else 'not finite on another rank'} at step "
            f"{step}: expected a finite value (lower the outer or inner learning rate, or set "
            "grad_clip)"
        )


def _check_finite_state(learner: MetaLearner, step: int) -> None:
    """Divergence without a NaN loss (``sgd`` at ``lr=1e6``: parameters and batch-norm
    running variances overflow to inf while the loss stays finite) stops the run here."""
    named = [(n, t) for n, t in (*learner.named_parameters(), *learner.named_buffers())
             if t.is_floating_point()]
    finite = [torch.isfinite(t).all() for _, t in named]
    if not finite or bool(torch.stack(finite).all()):
        return  # one synchronisation per step
    name = next(n for (n, _), ok in zip(named, finite) if not ok)
    raise NonFiniteLossError(f"{name} is not finite after step {step}: expected finite "
                             "weights (lower the outer or inner learning rate, or set "
                             "train.grad_clip); the last checkpoint is from before it")


def _gradients_in_threads(learner: MetaLearner, batch: MetaBatch,
                          chunks: list[tuple[int, int]], step: int, workers: int,
                          precision: str) -> dict[str, float]:
    """Task parallelism on one machine: contiguous shards of the chunks run on ``workers``
    threads, each with one intra-op thread and its own copy of the learner, and their
    gradients are summed in shard order (deterministic, unlike concurrent ``backward()``
    into shared ``.grad``).

    Why: a task's tensors (5 support images, 75 queries) are too small for two cores to
    share each op well, and PyTorch releases the GIL inside its kernels and backward.
    On Omniglot shapes (Conv4, 5-way 1-shot, meta-batch 32) two workers beat one worker
    with 2 intra-op threads, at about twice its peak memory (two tasks' graphs in flight;
    benchmarks/results/speed.md). Why copies: ``functional_call`` swaps tensors
    into the module's attributes for the duration of a call, so two threads must not share
    a module. Learners that update running batch-norm statistics in ``training_step`` are
    refused: the copies' statistics would be thrown away.
    """
    if any(getattr(module, "track_running_stats", False) and module.training
           for module in learner.modules()):
        raise ConfigError(f"train.workers={workers}: the learner updates running batch-norm "
                          "statistics in training_step, which per-thread copies would lose; "
                          "expected workers: 1 for it")
    names = [name for name, p in learner.named_parameters() if p.requires_grad]
    tasks = len(batch)
    per_worker = math.ceil(len(chunks) / workers)
    shards = [chunks[i:i + per_worker] for i in range(0, len(chunks), per_worker)]

    def run_shard(shard: list[tuple[int, int]]):
        torch.set_num_threads(1)
        replica = copy.deepcopy(learner)
        replica_params = dict(replica.named_parameters())
        params = [replica_params[name] for name in names]
        grads: list[torch.Tensor | None] = [None] * len(params)
        outputs = []
        for start, stop in shard:
            with forward_precision(replica, precision):
                output = replica.training_step(batch.slice(start, stop))
            share = (stop - start) / tasks
            chunk_grads = torch.autograd.grad(output.loss * share, params, allow_unused=True)
            grads = [g if total is None else total if g is None else total + g
                     for total, g in zip(grads, chunk_grads)]
            outputs.append((share, output.loss.item(), output.metrics))
        return grads, outputs

    threads = torch.get_num_threads()
    try:
        with ThreadPoolExecutor(len(shards)) as pool:
            results = list(pool.map(run_shard, shards))
    finally:
        torch.set_num_threads(threads)
    _check_finite([loss for _, outputs in results for _, loss, _ in outputs], step)
    params = dict(learner.named_parameters())
    metrics: dict[str, float] = {}
    for grads, outputs in results:
        for name, g in zip(names, grads):
            if g is not None:
                p = params[name]
                p.grad = g if p.grad is None else p.grad + g
        for share, _, chunk_metrics in outputs:
            for name, value in chunk_metrics.items():
                metrics[name] = metrics.get(name, 0.0) + share * value
    return metrics


def meta_train(
    learner: MetaLearner,
    batches: Iterable[MetaBatch],
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
    workers: int = 1,
    precision: str = "float32",
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

    ``workers > 1`` spreads those chunks over threads (task parallelism on one machine;
    see :func:`accumulate_meta_gradient`). ``precision``: that of the forward passes
    (:func:`forward_precision`; ``"bfloat16"`` autocasts them).

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
        metrics = accumulate_meta_gradient(learner, batch, backward_chunk, step, workers,
                                           precision)
        average_gradients(learner)
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(learner.parameters(), grad_clip)
        optimizer.step()
        _check_finite_state(learner, step + 1)
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
