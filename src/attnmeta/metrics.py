"""Few-shot evaluation: a metric per test episode, reported as mean ± 95% confidence interval."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from attnmeta.tasks.episode import Episode

__all__ = ["Summary", "summarize", "paired_difference", "per_task_metric", "accuracy", "mse"]


@dataclass(frozen=True)
class Summary:
    """Mean of per-episode values and the half-width of its confidence interval."""

    mean: float
    ci95: float
    n: int
    std: float

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.ci95:.4f}"

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def summarize(values: Iterable[float] | np.ndarray, confidence: float = 0.95) -> Summary:
    """Mean ± z·s/√n with s the sample standard deviation (ddof = 1), z the normal quantile.

    The normal approximation is what the few-shot literature reports (1.96·σ/√n over
    600–10000 episodes).
    """
    array = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, float)
    if array.size < 2:
        raise ValueError(f"{array.size} values: expected at least 2 to estimate an interval")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    std = float(array.std(ddof=1))
    return Summary(float(array.mean()), z * std / np.sqrt(array.size), int(array.size), std)


def paired_difference(first: np.ndarray, second: np.ndarray, confidence: float = 0.95
                      ) -> Summary:
    """Mean ± CI of ``first - second``, two methods' values ``[E]`` on the same ``E``
    episodes: the interval of the difference itself, narrower than the two intervals'
    overlap suggests whenever the methods fail on the same hard episodes."""
    first, second = np.asarray(first, float), np.asarray(second, float)
    if first.shape != second.shape:
        raise ValueError(f"{first.shape} and {second.shape} values: expected one of each "
                         "per episode, on the same episodes")
    return summarize(first - second, confidence)


def accuracy(predictions: Tensor, targets: Tensor) -> Tensor:
    """Per-task accuracy: logits ``[T, Q, N]``, labels ``[T, Q]`` -> ``[T]``."""
    return (predictions.argmax(-1) == targets).float().mean(-1)


def mse(predictions: Tensor, targets: Tensor) -> Tensor:
    """Per-task mean squared error: ``[T, Q, ...]`` -> ``[T]``."""
    return F.mse_loss(predictions, targets, reduction="none").flatten(1).mean(-1)


def per_task_metric(
    predict_batch: Callable[[Episode], Tensor],
    batches: Iterable[Episode],
    metric: Callable[[Tensor, Tensor], Tensor],
) -> np.ndarray:
    """``metric(predict_batch(batch), batch.query_y)`` for every task of every batch."""
    values = []
    for batch in batches:
        with torch.no_grad():
            values.append(metric(predict_batch(batch), batch.query_y).cpu())
    return torch.cat(values).numpy()
