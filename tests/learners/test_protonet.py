"""ProtoNet logits are negative squared distances to class means."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attnmeta.learners import ProtoNet
from attnmeta.learners.protonet import prototype_logits, prototypes
from attnmeta.tasks import Episode


def test_logits_are_negative_squared_distances_to_class_means():
    torch.manual_seed(0)
    encoder = nn.Linear(4, 3).double()
    learner = ProtoNet(encoder)
    n_way, shots, queries, tasks = 3, 2, 4, 2
    support_x = torch.randn(tasks, n_way * shots, 4, dtype=torch.float64)
    support_y = torch.arange(n_way).repeat(shots).expand(tasks, -1)  # interleaved labels
    query_x = torch.randn(tasks, queries, 4, dtype=torch.float64)
    logits = learner.logits(support_x, support_y, query_x)
    assert logits.shape == (tasks, queries, n_way)
    for t in range(tasks):
        for c in range(n_way):
            mean = encoder(support_x[t][support_y[t] == c]).mean(0)
            for q in range(queries):
                expected = -((encoder(query_x[t, q]) - mean) ** 2).sum()
                torch.testing.assert_close(logits[t, q, c], expected, rtol=1e-12, atol=1e-12)


def test_cosine_distance_and_training_step():
    z = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    protos = prototypes(z, torch.tensor([0, 1]), 2)
    logits = prototype_logits(torch.tensor([[3.0, 0.0]]), protos, "cosine")
    torch.testing.assert_close(logits, torch.tensor([[1.0, 0.0]]))
    learner = ProtoNet(nn.Identity())
    batch = Episode(z[None], torch.tensor([[0, 1]]), torch.tensor([[[0.9, 0.1]]]), torch.tensor([[0]]))
    output = learner.training_step(batch)
    assert output.metrics["accuracy"] == 1.0
    expected = torch.nn.functional.cross_entropy(
        torch.tensor([[-(0.1**2 + 0.1**2), -(0.9**2 + 1.9**2)]]), torch.tensor([0]))
    torch.testing.assert_close(output.loss, expected)


def test_unknown_distance_is_rejected():
    with pytest.raises(ValueError, match="distance='manhattan'"):
        ProtoNet(nn.Identity(), distance="manhattan")
