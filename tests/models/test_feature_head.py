"""attnmeta.models.feature_head: the backbone over precomputed features."""

from __future__ import annotations

import torch

from attnmeta.models.feature_head import FeatureHead


def test_without_out_dim_features_pass_through_flattened():
    head = FeatureHead(6)
    x = torch.randn(4, 2, 3)
    assert torch.equal(head(x), x.flatten(1)) and head.feature_dim == 6
    assert list(head.parameters()) == []


def test_with_out_dim_it_is_a_linear_head_named_head():
    torch.manual_seed(0)
    head = FeatureHead(5, 3)
    x = torch.randn(2, 5)
    torch.testing.assert_close(head(x), x @ head.head.weight.T + head.head.bias)
    assert sorted(name for name, _ in head.named_parameters()) == ["head.bias", "head.weight"]
