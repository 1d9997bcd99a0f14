"""ResNet-12, the backbone of most few-shot results on miniImageNet and tieredImageNet.

As in MetaOptNet (Lee et al., "Meta-Learning with Differentiable Convex Optimization",
CVPR 2019) and RFS (Tian et al., "Rethinking Few-Shot Image Classification: a Good
Embedding Is All You Need?", ECCV 2020): four residual blocks, each three 3×3 convolutions
(no bias) with batch norm and LeakyReLU(0.1) between them, a 1×1 convolution + batch norm
shortcut, LeakyReLU after the sum and a 2×2 max-pool; widths 64-160-320-640; the last
feature map averaged over space. Those papers' DropBlock regulariser is not included.

The block pools before its last LeakyReLU: the activation is strictly increasing, so
``leaky(maxpool(x)) == maxpool(leaky(x))`` value for value and gradient for gradient, and
it then runs on a quarter of the elements (as :mod:`attnmeta.models.conv4` does).
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn

from attnmeta.models.capabilities import declares
from attnmeta.models.registry import register_backbone
from attnmeta.norm import BatchStatNorm2d, ConvNormPairs
from attnmeta.pooling import MaxPool2d

__all__ = ["ResNet12", "ResidualBlock", "resnet12_widths"]

SLOPE = 0.1  # LeakyReLU's negative slope in both papers


def resnet12_widths(hidden: int = 64) -> tuple[int, int, int, int]:
    """The four blocks' widths: ``hidden × (1, 2.5, 5, 10)``, 64-160-320-640 for 64."""
    return hidden, hidden * 5 // 2, hidden * 5, hidden * 10


def _norm(channels: int, norm: str) -> nn.Module:
    if norm not in ("batch", "running"):
        raise ValueError(f"norm={norm!r}: expected 'batch' (batch statistics) or 'running'")
    return BatchStatNorm2d(channels) if norm == "batch" else nn.BatchNorm2d(channels)


def _conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)


class ResidualBlock(ConvNormPairs):
    """``[N, C_in, H, W]`` -> ``[N, C_out, H // 2, W // 2]``: three conv-norm layers plus a
    1×1 conv-norm shortcut, LeakyReLU, 2×2 max-pool."""

    # each norm directly follows its convolution: attnmeta.norm.fold_batch_norms may fold it
    conv_norm_pairs: ClassVar[tuple[tuple[str, str], ...]] = (
        ("conv1", "norm1"), ("conv2", "norm2"), ("conv3", "norm3"))

    def __init__(self, in_channels: int, out_channels: int, norm: str = "batch") -> None:
        super().__init__()
        self.conv1, self.norm1 = _conv3x3(in_channels, out_channels), _norm(out_channels, norm)
        self.conv2, self.norm2 = _conv3x3(out_channels, out_channels), _norm(out_channels, norm)
        self.conv3, self.norm3 = _conv3x3(out_channels, out_channels), _norm(out_channels, norm)
        self.shortcut = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
            _norm(out_channels, norm))
        self.activation = nn.LeakyReLU(SLOPE)
        self.pool = MaxPool2d(2)

    def forward(self, x: Tensor) -> Tensor:
        out = self.activation(self.norm1(self.conv1(x)))
        out = self.activation(self.norm2(self.conv2(out)))
        out = self.norm3(self.conv3(out))
        return self.activation(self.pool(out + self.shortcut(x)))


@declares("features", "spatial_tokens")
class ResNet12(nn.Module):
    """``[N, C, H, W]`` images -> ``[N, out_dim]`` logits, or ``[N, feature_dim]`` features
    (``feature_dim`` = the last width, 640 for ``hidden=64``) if ``out_dim=0``.

    Any side from 16 up works (four halvings, then the average over what is left); the
    papers use 84×84. ``norm="batch"`` normalises with each batch's statistics (MAML);
    ``"running"`` uses ``nn.BatchNorm2d`` with running statistics in eval mode.

    Spatial tokens (:meth:`token_map`): the last block's map before the average,
    ``[N, h·h, feature_dim]``, ``h`` = four floored halvings of the side (5 at 84×84, 1 at
    28×28).
    """

    def __init__(self, in_channels: int = 3, out_dim: int = 0, hidden: int = 64,
                 norm: str = "batch") -> None:
        super().__init__()
        widths = resnet12_widths(hidden)
        self.features = nn.Sequential(*(
            ResidualBlock(c_in, c_out, norm)
            for c_in, c_out in zip((in_channels, *widths[:-1]), widths)))
        self.feature_dim = self.token_dim = widths[-1]
        self.head = nn.Linear(self.feature_dim, out_dim) if out_dim else nn.Identity()
        for module in self.modules():
            if isinstance(module, nn.Conv2d):  # RFS's initialisation
                nn.init.kaiming_normal_(module.weight, mode="fan_out",
                                        nonlinearity="leaky_relu")

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))

    def token_map(self, x: Tensor) -> Tensor:
        """``x [N, C, S, S]`` -> ``[N, h·h, feature_dim]``: the map :meth:`forward` averages,
        locations row-major."""
        return self.features(x).flatten(2).transpose(1, 2)

    def token_grid(self, image_size: int) -> tuple[int, int]:
        """``(h, h)`` of :meth:`token_map` at ``image_size × image_size``."""
        side = image_size
        for _ in self.features:
            side //= 2
        return side, side


register_backbone("resnet12", lambda m, in_channels, out_dim, image_size: ResNet12(
    in_channels, out_dim, m.hidden, m.norm), norm_configurable=True)
