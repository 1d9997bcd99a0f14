"""Conv4, the backbone of MAML, ProtoNets and Matching Networks on Omniglot / miniImageNet.

4 × [conv 3×3 (64), BatchNorm, ReLU, max-pool 2]; on 28×28 inputs the feature map ends
at 1×1×64. BatchNorm uses the statistics of the batch it sees (as in MAML's reference
code; see :mod:`attnmeta.norm` for its vmap-exact form). The block pools before the ReLU:
ReLU is monotone, so ``relu(maxpool(x)) == maxpool(relu(x))`` value for value and
gradient for gradient, and the ReLU then runs on a quarter of the elements. Pooling uses
:mod:`attnmeta.pooling`'s faster forward kernel.
"""

from __future__ import annotations

from torch import Tensor, nn

from attnmeta.models.capabilities import declares
from attnmeta.norm import BatchStatNorm2d
from attnmeta.pooling import MaxPool2d

__all__ = ["Conv4"]


def conv_block(in_channels: int, out_channels: int, norm: str = "batch") -> nn.Sequential:
    if norm not in ("batch", "running"):
        raise ValueError(f"norm={norm!r}: expected 'batch' (batch statistics) or 'running'")
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        BatchStatNorm2d(out_channels) if norm == "batch" else nn.BatchNorm2d(out_channels),
        MaxPool2d(2),
        nn.ReLU(),
    )


@declares("features")
class Conv4(nn.Module):
    """``[N, C, H, W]`` images -> ``[N, out_dim]`` logits, or ``[N, features]`` if ``out_dim=0``.

    ``norm="batch"`` normalises with each batch's statistics (MAML); ``"running"`` uses
    ``nn.BatchNorm2d`` with running statistics in eval mode (ProtoNets, Matching Nets).
    """

    def __init__(self, in_channels: int = 1, out_dim: int = 5, hidden: int = 64,
                 image_size: int = 28, norm: str = "batch") -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_block(in_channels, hidden, norm), conv_block(hidden, hidden, norm),
            conv_block(hidden, hidden, norm), conv_block(hidden, hidden, norm),
        )
        side = image_size
        for _ in range(4):
            side //= 2
        self.feature_dim = hidden * side * side
        self.head = nn.Linear(self.feature_dim, out_dim) if out_dim else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).flatten(1))
