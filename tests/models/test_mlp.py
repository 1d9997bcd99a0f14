"""attnmeta.models.mlp: MAML's sinusoid regressor."""

from __future__ import annotations

import torch
from torch import nn

from attnmeta.models.mlp import MLP


def test_the_default_is_two_hidden_layers_of_40_with_relu():
    model = MLP()
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(1, 40), (40, 40), (40, 1)]
    assert sum(isinstance(m, nn.ReLU) for m in model.modules()) == 2


def test_forward_is_the_layers_composed_by_hand():
    torch.manual_seed(0)
    model = MLP(3, 2, hidden=(5,))
    x = torch.randn(4, 7, 3)  # any leading dimensions
    first, head = model.body[0], model.head
    expected = torch.relu(x @ first.weight.T + first.bias) @ head.weight.T + head.bias
    torch.testing.assert_close(model(x), expected)
    assert MLP(2, 3, hidden=())(torch.zeros(1, 2)).shape == (1, 3)  # no hidden layer: linear
