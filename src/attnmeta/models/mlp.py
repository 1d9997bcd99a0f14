"""Fully connected regressor of MAML's sinusoid experiment (two hidden layers of 40, ReLU)."""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

__all__ = ["MLP"]


class MLP(nn.Module):
    """``[*, in_dim] -> [*, out_dim]`` with ReLU between the hidden layers."""

    def __init__(self, in_dim: int = 1, out_dim: int = 1, hidden: Sequence[int] = (40, 40)) -> None:
        super().__init__()
        widths = [in_dim, *hidden]
        layers: list[nn.Module] = []
        for w_in, w_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(w_in, w_out), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(widths[-1], out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))
