"""One-to-one (balanced) assignment of an episode's queries to its classes: a transductive
decision rule.

Lake et al.'s one-shot runs (Science 2015) hold one query per class: twenty test images,
each of a different one of the twenty classes. A rule that knows this can decide all the
queries together: the assignment of queries to classes, each class taking exactly
``per_class`` queries, of largest total log-probability (Hungarian algorithm). Polis & Ilin
("A Relational Model for One-Shot Classification of Images and Pen Strokes",
Neurocomputing 2022) report their near-perfect Omniglot-challenge accuracy with this
matching. It reads every query of an episode at once, so it is *transductive*: results with
it are reported as such, never beside inductive ones as if alike.

scipy's ``linear_sum_assignment`` (a modified Jonker-Volgenant solver) does the matching:
each class appears ``per_class`` times as a column, so the square cost matrix has one row
per query and one column per slot.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

__all__ = ["ONE_TO_ONE", "balanced_assignment", "assigned_accuracy"]

# how a result this rule decided names it (AccuracyResult.transductive, paired.py's rows)
ONE_TO_ONE = "one-to-one assignment of each episode's queries"


def balanced_assignment(logits: Tensor, per_class: int) -> Tensor:
    """``logits [Q, N]`` with ``Q = N · per_class`` -> ``[Q]`` class indices in which every
    class appears exactly ``per_class`` times, maximising the sum of the chosen
    log-probabilities (``log_softmax`` over the classes of each query)."""
    queries, classes = logits.shape
    if queries != classes * per_class:
        raise ValueError(f"{queries} queries for {classes} classes: expected "
                         f"{classes} x {per_class} = {classes * per_class} (each class takes "
                         f"per_class={per_class} queries)")
    log_probs = torch.log_softmax(logits.detach().double(), dim=-1).cpu().numpy()
    # [Q, N·per_class]: slot j is class j // per_class
    cost = -np.repeat(log_probs, per_class, axis=1)
    rows, slots = linear_sum_assignment(cost)
    assigned = np.empty(queries, dtype=np.int64)
    assigned[rows] = slots // per_class
    return torch.from_numpy(assigned).to(logits.device)


def assigned_accuracy(predictions: Tensor, targets: Tensor) -> Tensor:
    """Per-task accuracy of the balanced assignment: logits ``[T, Q, N]``, labels ``[T, Q]``
    (``Q / N`` queries of each class) -> ``[T]`` (the transductive twin of
    :func:`attnmeta.metrics.accuracy`)."""
    tasks, queries, classes = predictions.shape
    if queries % classes:
        raise ValueError(f"{queries} queries for {classes} classes: expected a multiple "
                         "(the same number of queries of each class)")
    assigned = torch.stack([balanced_assignment(predictions[t], queries // classes)
                            for t in range(tasks)])
    return (assigned == targets).float().mean(-1)
