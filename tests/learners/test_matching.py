"""Matching Networks: the prediction is the cosine-attention-weighted sum of support labels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnmeta.learners import MatchingNet
from attnmeta.tasks import Episode


def test_probabilities_are_attention_weighted_support_labels():
    torch.manual_seed(0)
    encoder = nn.Linear(4, 3).double()
    learner = MatchingNet(encoder, scale=5.0)
    support_x = torch.randn(2, 6, 4, dtype=torch.float64)
    support_y = torch.tensor([[0, 1, 2, 0, 1, 2], [2, 2, 0, 1, 0, 1]])
    query_x = torch.randn(2, 3, 4, dtype=torch.float64)
    logits = learner.logits(support_x, support_y, query_x)
    for t in range(2):
        for q in range(3):
            f = encoder(query_x[t, q])
            cosines = torch.stack([F.cosine_similarity(f, encoder(s), dim=0) for s in support_x[t]])
            weights = torch.softmax(5.0 * cosines, dim=0)
            expected = torch.zeros(3, dtype=torch.float64).index_add(0, support_y[t], weights)
            torch.testing.assert_close(logits[t, q].exp(), expected, rtol=1e-10, atol=1e-12)
    attention = learner.attention(support_x, query_x)
    torch.testing.assert_close(attention.sum(-1), torch.ones(2, 3, dtype=torch.float64))


def test_training_loss_is_negative_log_likelihood():
    torch.manual_seed(0)
    learner = MatchingNet(nn.Identity(), scale=1.0)
    support = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    batch = Episode(support, torch.tensor([[0, 1]]), torch.tensor([[[1.0, 0.0]]]),
                    torch.tensor([[0]]))
    output = learner.training_step(batch)
    p_correct = torch.softmax(torch.tensor([1.0, 0.0]), 0)[0]
    torch.testing.assert_close(output.loss, -torch.log(p_correct))
    assert output.metrics["accuracy"] == 1.0
