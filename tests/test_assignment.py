"""attnmeta.assignment: the balanced assignment against brute force over permutations."""

from __future__ import annotations

import itertools

import pytest
import torch

from attnmeta.assignment import assigned_accuracy, balanced_assignment
from attnmeta.metrics import accuracy


def brute_force(logits: torch.Tensor, per_class: int) -> tuple[float, set[tuple[int, ...]]]:
    """The best total log-probability over every balanced labelling, and the labellings
    that reach it."""
    log_probs = torch.log_softmax(logits.double(), -1)
    classes = logits.shape[1]
    slots = [c for c in range(classes) for _ in range(per_class)]
    best, argbest = -float("inf"), set()
    for labelling in set(itertools.permutations(slots)):
        total = log_probs[torch.arange(len(slots)), torch.tensor(labelling)].sum().item()
        if total > best + 1e-12:
            best, argbest = total, {labelling}
        elif abs(total - best) <= 1e-12:
            argbest.add(labelling)
    return best, argbest


@pytest.mark.parametrize("classes, per_class, seed", [(4, 1, 0), (5, 1, 1), (3, 2, 2), (2, 3, 3)])
def test_balanced_assignment_is_the_best_balanced_labelling(classes, per_class, seed):
    logits = torch.randn(classes * per_class, classes,
                         generator=torch.Generator().manual_seed(seed)) * 3
    assigned = balanced_assignment(logits, per_class)
    assert torch.bincount(assigned, minlength=classes).tolist() == [per_class] * classes
    best, argbest = brute_force(logits, per_class)
    assert tuple(assigned.tolist()) in argbest


def test_assignment_fixes_a_collision_that_argmax_makes():
    # queries 0 and 1 both prefer class 0; query 1 prefers it far less than query 0 does
    logits = torch.tensor([[5.0, 0.0, 0.0], [1.0, 0.9, -3.0], [0.0, -3.0, 2.0]])
    assert logits.argmax(-1).tolist() == [0, 0, 2]
    assert balanced_assignment(logits, 1).tolist() == [0, 1, 2]
    targets = torch.tensor([[0, 1, 2]])
    assert accuracy(logits[None], targets).item() == pytest.approx(2 / 3)
    assert assigned_accuracy(logits[None], targets).item() == 1.0


def test_assignment_equals_argmax_when_argmax_is_already_balanced():
    logits = torch.randn(2, 6, 3, generator=torch.Generator().manual_seed(4))
    logits[:, torch.arange(6), torch.arange(6) % 3] += 20.0  # each class twice, by far
    targets = (torch.arange(6) % 3).repeat(2, 1)
    assert torch.equal(assigned_accuracy(logits, targets), accuracy(logits, targets))


def test_unbalanced_query_counts_are_refused():
    with pytest.raises(ValueError, match=r"^5 queries for 2 classes: expected 2 x 2 = 4"):
        balanced_assignment(torch.zeros(5, 2), 2)
    with pytest.raises(ValueError, match=r"^5 queries for 2 classes: expected a multiple"):
        assigned_accuracy(torch.zeros(1, 5, 2), torch.zeros(1, 5, dtype=torch.long))
