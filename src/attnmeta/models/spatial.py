"""An image backbone's last feature map as tokens, flattened so they travel as features.

The relational learners (:mod:`attnmeta.learners.cross_transformer`,
:mod:`attnmeta.learners.pair_matcher`) compare the *parts* of images: they read the
``L = H·W`` locations of a backbone's last map before pooling, each a ``D``-vector
(a backbone declares ``spatial_tokens``, :mod:`attnmeta.models.capabilities`).
:class:`SpatialTokens` hands them over flattened to ``[N, L·D]``, so everything that
handles one feature vector per example (the frozen-feature cache of
:mod:`attnmeta.runs.features`, :class:`~attnmeta.learners.frozen.FrozenFeatureLearner`,
``fit_task`` / ``predict_fitted``, ONNX export) handles tokens unchanged; a learner
reshapes them back with :func:`unflatten_tokens`.

Memory: a token vector is ``L`` times a pooled one's width: Conv4 at 28×28 gives 3·3·64
= 576 floats per image (Omniglot's 88k images cached: 203 MB as float32), ResNet-12 at 84
gives 25·640 = 16 000 (64 KB per image), EfficientNet-Lite0 at 224 gives 49·1280 = 62 720
(245 KiB per image, 2.5 GB per 10 000 images).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnmeta.models.capabilities import SpatialTokensEncoder, declares

__all__ = ["SpatialTokens", "unflatten_tokens", "grid_positions"]


def unflatten_tokens(z: Tensor, length: int, dim: int) -> Tensor:
    """``z [..., L·D]`` -> ``[..., L, D]`` (the inverse of :class:`SpatialTokens`'s
    flattening; a ValueError when the width is not ``L·D``)."""
    if z.shape[-1] != length * dim:
        raise ValueError(f"features of width {z.shape[-1]}: expected {length} tokens × "
                         f"{dim} = {length * dim} (flattened spatial tokens)")
    return z.unflatten(-1, (length, dim))


def grid_positions(height: int, width: int) -> Tensor:
    """``[H·W, 2]``: each location's (row, column), row-major, scaled to [0, 1] (0 for a
    side of one)."""
    rows = torch.arange(height, dtype=torch.float32) / max(height - 1, 1)
    cols = torch.arange(width, dtype=torch.float32) / max(width - 1, 1)
    return torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1).reshape(-1, 2)


@declares("features")
class SpatialTokens(nn.Module):
    """``x [N, C, S, S]`` -> the ``backbone``'s spatial tokens flattened, ``[N, L·D]``.

    Attributes:
        grid: ``(H, W)`` of the token map at ``image_size``; ``L = H·W``.
        token_dim: ``D``, the width of one token.
        feature_dim: ``L·D``, the width of what :meth:`forward` returns.
    """

    def __init__(self, backbone: SpatialTokensEncoder, image_size: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.grid = backbone.token_grid(image_size)
        self.token_dim = backbone.token_dim
        self.feature_dim = self.grid[0] * self.grid[1] * self.token_dim

    @property
    def num_tokens(self) -> int:
        """``L = H·W``."""
        return self.grid[0] * self.grid[1]

    def tokens(self, x: Tensor) -> Tensor:
        """``x [N, C, S, S]`` -> ``[N, L, D]``."""
        return self.backbone.token_map(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.tokens(x).flatten(1)
