"""Matching Networks: the prediction is the cosine-attention-weighted sum of support labels."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnmeta.learners import MatchingNet
from attnmeta.learners.matching import FullContextEmbedding
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


def lstm_cell_by_hand(cell: nn.LSTMCell, x, h, c):
    """The LSTM equations written out (PyTorch gate order: input, forget, cell, output)."""
    gates = x @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh
    i, f, g, o = gates.chunk(4)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def test_full_context_query_embedding_follows_the_paper_equations():
    torch.manual_seed(0)
    context = FullContextEmbedding(dim=4, steps=3).double()
    support_g = torch.randn(2, 5, 4, dtype=torch.float64)
    query_z = torch.randn(2, 3, 4, dtype=torch.float64)
    embedded = context.embed_query(query_z, support_g)
    for t in range(2):
        for q in range(3):
            f = query_z[t, q]
            h, c = f, torch.zeros(4, dtype=torch.float64)
            for _ in range(3):
                read = torch.softmax(support_g[t] @ h, dim=0) @ support_g[t]  # r_{k-1}
                h_hat, c = lstm_cell_by_hand(context.query_cell, f, h + read, c)
                h = h_hat + f
            torch.testing.assert_close(embedded[t, q], h, rtol=1e-10, atol=1e-12)


def test_full_context_support_embedding_reads_both_directions():
    torch.manual_seed(0)
    context = FullContextEmbedding(dim=3).double()
    support_z = torch.randn(1, 4, 3, dtype=torch.float64)
    lstm = context.support_lstm
    forward_lstm = nn.LSTM(3, 3, batch_first=True).double()
    backward_lstm = nn.LSTM(3, 3, batch_first=True).double()
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(forward_lstm, f"{name}_l0").copy_(getattr(lstm, f"{name}_l0"))
            getattr(backward_lstm, f"{name}_l0").copy_(getattr(lstm, f"{name}_l0_reverse"))
    forward, _ = forward_lstm(support_z)
    backward, _ = backward_lstm(support_z.flip(1))
    expected = support_z + forward + backward.flip(1)
    torch.testing.assert_close(context.embed_support(support_z), expected, rtol=1e-10, atol=1e-12)


def test_matching_with_fce_still_predicts_attention_weighted_labels():
    torch.manual_seed(0)
    learner = MatchingNet(nn.Linear(4, 3), scale=5.0, fce=True, feature_dim=3, fce_steps=2).double()
    support_x = torch.randn(2, 6, 4, dtype=torch.float64)
    support_y = torch.tensor([[0, 1, 2, 0, 1, 2], [2, 2, 0, 1, 0, 1]])
    query_x = torch.randn(2, 3, 4, dtype=torch.float64)
    weights = learner.attention(support_x, query_x)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, dtype=torch.float64))
    expected = weights @ F.one_hot(support_y, 3).double()
    torch.testing.assert_close(learner.logits(support_x, support_y, query_x).exp(), expected)
    plain = MatchingNet(learner.encoder, scale=5.0)
    assert not torch.allclose(plain.attention(support_x, query_x), weights)  # FCE changes it
    with pytest.raises(ValueError, match="fce=True needs feature_dim"):
        MatchingNet(nn.Identity(), fce=True)
