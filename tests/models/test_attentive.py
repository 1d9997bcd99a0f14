"""attnmeta.models.attentive: the Attentive Neural Process and the memory-attention
regressor, checked by the properties their attention gives them."""

from __future__ import annotations

import torch

from attnmeta.models.attentive import AttentiveNP, MemoryAttentionRegressor


def test_anp_predictions_do_not_depend_on_the_order_of_the_support_pairs():
    torch.manual_seed(0)
    model = AttentiveNP(x_dim=2, y_dim=3, d_model=8, n_heads=2, n_layers=1).eval()
    support_x, support_y, query_x = torch.randn(2, 5, 2), torch.randn(2, 5, 3), torch.randn(2, 4, 2)
    prediction, weights = model(support_x, support_y, query_x, need_weights=True)
    assert prediction.shape == (2, 4, 3)
    torch.testing.assert_close(weights.sum(-1), torch.ones_like(weights.sum(-1)))
    order = torch.randperm(5)
    torch.testing.assert_close(model(support_x[:, order], support_y[:, order], query_x),
                               prediction, rtol=1e-5, atol=1e-5)


def test_anp_queries_are_predicted_independently_of_each_other():
    torch.manual_seed(1)
    model = AttentiveNP(d_model=8, n_heads=2, n_layers=1).eval()
    support_x, support_y, query_x = torch.randn(1, 6, 1), torch.randn(1, 6, 1), torch.randn(1, 5, 1)
    together = model(support_x, support_y, query_x)
    alone = torch.cat([model(support_x, support_y, query_x[:, i:i + 1]) for i in range(5)], 1)
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


def test_memory_regressor_is_pointwise_and_depends_on_its_memory():
    torch.manual_seed(2)
    model = MemoryAttentionRegressor(in_dim=2, out_dim=3, d_model=8, n_memory=4, n_heads=2)
    x = torch.randn(5, 2)
    out = model(x)
    assert out.shape == (5, 3)
    torch.testing.assert_close(torch.cat([model(x[i:i + 1]) for i in range(5)]), out,
                               rtol=1e-5, atol=1e-5)
    assert model(torch.randn(2, 5, 2)).shape == (2, 5, 3)  # leading batch dimensions
    with torch.no_grad():
        model.memory.add_(1.0)
    assert not torch.allclose(model(x), out)
