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


def test_centred_cosine_prototypes_equal_a_naive_reference():
    """center=True: unit vectors centred on the support mean, then cosine to class means."""
    import torch.nn.functional as F
    from torch import nn

    from attnmeta.learners import ProtoNet

    generator = torch.Generator().manual_seed(0)
    support_z, query_z = torch.randn(1, 6, 5, generator=generator), torch.randn(1, 4, 5,
                                                                                generator=generator)
    support_y = torch.tensor([[0, 1, 2, 0, 1, 2]])
    got = ProtoNet(nn.Identity(), "cosine", temperature=0.5, center=True).logits_from_features(
        support_z, support_y, query_z)[0]
    units = F.normalize(support_z[0], dim=-1)
    mean = units.mean(0)
    for q in range(4):
        for c in range(3):
            prototype = (units[support_y[0] == c] - mean).mean(0)
            centred = F.normalize(query_z[0, q], dim=0) - mean
            expected = F.cosine_similarity(centred, prototype, dim=0) / 0.5
            assert abs(float(got[q, c]) - float(expected)) < 1e-5
    with pytest.raises(ValueError, match="cosine"):
        ProtoNet(nn.Identity(), "sqeuclidean", center=True)


def test_a_config_with_center_and_a_squared_distance_is_refused_naming_the_key():
    from attnmeta.runs.config import ConfigError, config_from_dict

    with pytest.raises(ConfigError, match="learner.center"):
        config_from_dict({"name": "x", "learner": {"name": "protonet", "center": True}})
    assert config_from_dict({"name": "x", "learner": {"name": "protonet", "center": True,
                                                      "distance": "cosine"}}).learner.center
