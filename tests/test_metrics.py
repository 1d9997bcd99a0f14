"""attnmeta.metrics (to be renamed metrics): per-task metrics and their confidence
intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from attnmeta.metrics import (Summary, accuracy, mse, paired_difference, per_task_metric,
                               summarize)
from attnmeta.tasks import Episode


def test_summary_is_mean_and_normal_interval():
    values = np.array([0.5, 0.7, 0.9, 1.1])
    summary = summarize(values)
    assert summary.mean == pytest.approx(0.8)
    assert summary.ci95 == pytest.approx(1.959964 * np.std(values, ddof=1) / 2, rel=1e-6)
    assert summary.n == 4
    with pytest.raises(ValueError, match="1 values: expected at least 2"):
        summarize([1.0])


def test_paired_difference_is_the_interval_of_the_per_episode_differences():
    # two methods right on 3 of 4 episodes each, failing on different ones: d = [1, 0, 0, -1]
    first, second = np.array([1.0, 1.0, 1.0, 0.0]), np.array([0.0, 1.0, 1.0, 1.0])
    paired = paired_difference(first, second)
    assert paired.mean == pytest.approx(0.0)
    assert paired.ci95 == pytest.approx(1.959964 * math.sqrt(2 / 3) / 2, rel=1e-6)
    # failing on the same hard episode, a constant lead has a zero-width interval, although
    # each method's own interval is wide
    lead = paired_difference(np.array([1.0, 1.0, 0.5, 0.0]), np.array([0.9, 0.9, 0.4, -0.1]))
    assert lead.mean == pytest.approx(0.1) and lead.ci95 == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match=r"\(3,\) and \(4,\) values: expected one of each"):
        paired_difference(np.zeros(3), np.zeros(4))


def test_per_task_metrics():
    logits = torch.tensor([[[2.0, 1.0], [0.0, 3.0]], [[1.0, 0.0], [1.0, 0.0]]])
    labels = torch.tensor([[0, 1], [1, 1]])
    torch.testing.assert_close(accuracy(logits, labels), torch.tensor([1.0, 0.0]))
    pred = torch.zeros(2, 3, 1)
    target = torch.tensor([[1.0, 2.0, 2.0], [0.0, 0.0, 3.0]]).unsqueeze(-1)
    torch.testing.assert_close(mse(pred, target), torch.tensor([3.0, 3.0]))
    assert math.isclose(mse(pred, target).mean().item(), 3.0)



def test_a_summary_prints_and_serialises_its_numbers():
    summary = Summary(0.81234, 0.01999, 10, 0.03)
    assert str(summary) == "0.8123 ± 0.0200"
    assert summary.as_dict() == {"mean": 0.81234, "ci95": 0.01999, "n": 10, "std": 0.03}
    wider = summarize([0.5, 0.7, 0.9, 1.1], confidence=0.99)
    assert wider.ci95 == pytest.approx(2.575829 * np.std([0.5, 0.7, 0.9, 1.1], ddof=1) / 2,
                                       rel=1e-6)


def test_per_task_metric_concatenates_every_task_of_every_batch():
    def batch(labels):
        labels = torch.tensor(labels)
        return Episode(torch.zeros(len(labels), 1), torch.zeros(len(labels), 1), labels.float(),
                       labels)

    def predict_batch(episode):  # logits from the query inputs: right where x == y
        return torch.nn.functional.one_hot(episode.query_x.long(), 2).float()

    batches = [batch([[0, 1], [1, 1]]), batch([[1, 0]])]
    values = per_task_metric(predict_batch, batches, accuracy)
    assert values.tolist() == [1.0, 1.0, 1.0]
    assert per_task_metric(lambda e: torch.zeros_like(e.query_y).float(), batches,
                           lambda p, t: (p != t).float().mean(-1)).tolist() == [0.5, 1.0, 0.5]
