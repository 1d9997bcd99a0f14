"""Transformer backbones for gradient-based meta-learning: sequences and image patches.

A small pre-norm transformer (:class:`SequenceTransformer`) over a sequence of feature
vectors with a learned ``[CLS]`` token, and :class:`VisionTransformer`, the same over the
non-overlapping patches of an image (Dosovitskiy et al., ICLR 2021). Both are plain
``nn.Module`` s with no in-place state, so MAML and Reptile adapt them through
``torch.func.functional_call``, second order included: LayerNorm is the plain-op
:class:`attnmeta.norm.LayerNorm` (exact meta-gradients) and second-order MAML declares its
double backward (:func:`attnmeta.kernels.differentiable`), so the attention runs the plain
formula there instead of the fused kernel (which has none).

``forward(x, need_weights=True)`` also returns every block's attention weights;
:meth:`VisionTransformer.patch_attention` turns them into the ``[CLS]``-over-patches maps
that the gradient learners' ``attention_maps`` return and :mod:`attnmeta.viz` draws.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnmeta.models.capabilities import declares
from attnmeta.models.registry import register_backbone
from attnmeta.attention import TransformerBlock
from attnmeta.norm import LayerNorm

__all__ = ["SequenceTransformer", "VisionTransformer", "patchify"]


@declares("features")
class SequenceTransformer(nn.Module):
    """``[N, L, in_dim]`` sequences -> ``[N, out_dim]`` logits (or ``[N, d_model]`` features
    if ``out_dim=0``), read from the ``[CLS]`` token after ``depth`` blocks.

    Position embeddings are learned for up to ``max_length`` elements; the ``[CLS]`` token
    sits at position 0 and its output is the sequence's summary, so attention from it to
    the elements shows what the prediction rests on.
    """

    def __init__(self, in_dim: int, out_dim: int = 0, d_model: int = 64, depth: int = 4,
                 n_heads: int = 4, max_length: int = 64, mlp_ratio: float = 2.0,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth={depth}: expected at least 1 transformer block")
        self.embed = nn.Linear(in_dim, d_model)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d_model))
        self.position = nn.Parameter(torch.randn(1, max_length + 1, d_model) * 0.02)
        self.blocks = nn.ModuleList([TransformerBlock(d_model, n_heads, mlp_ratio, dropout)
                                     for _ in range(depth)])
        self.norm = LayerNorm(d_model)
        self.feature_dim = d_model
        self.max_length = max_length
        self.head = nn.Linear(d_model, out_dim) if out_dim else nn.Identity()

    def forward(self, x: Tensor, need_weights: bool = False
                ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """``x [N, L, in_dim]`` -> ``[N, out]``; with ``need_weights`` also the attention
        weights of each block, ``[N, n_heads, L + 1, L + 1]`` (index 0 is ``[CLS]``)."""
        if x.shape[1] > self.max_length:
            raise ValueError(f"sequence length {x.shape[1]} exceeds max_length="
                             f"{self.max_length} of this model")
        tokens, weights = self.states(x, need_weights)
        out = self.head(self.norm(tokens[:, 0]))
        return (out, weights) if need_weights else out

    def states(self, x: Tensor, need_weights: bool = False
               ) -> tuple[Tensor, list[Tensor | None]]:
        """The last block's tokens ``[N, L + 1, d_model]`` (``[CLS]`` first, before the final
        norm) and each block's weights (``None`` unless ``need_weights``)."""
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), self.embed(x)], dim=1)
        tokens = tokens + self.position[:, : tokens.shape[1]]
        weights = []
        for block in self.blocks:
            tokens, block_weights = block(tokens, need_weights=need_weights)
            weights.append(block_weights)
        return tokens, weights


def patchify(images: Tensor, patch_size: int) -> Tensor:
    """``[N, C, H, W]`` -> ``[N, (H/p)·(W/p), C·p·p]`` non-overlapping patches, row-major."""
    n, c, h, w = images.shape
    if h % patch_size or w % patch_size:
        raise ValueError(f"image size {h}x{w} is not divisible by patch_size={patch_size}")
    patches = images.unfold(2, patch_size, patch_size).unfold(3, patch_size, patch_size)
    # [N, C, H/p, W/p, p, p] -> [N, H/p, W/p, C, p, p]
    return patches.permute(0, 2, 3, 1, 4, 5).reshape(n, -1, c * patch_size * patch_size)


@declares("features", "patch_attention", "spatial_tokens")
class VisionTransformer(nn.Module):
    """A small ViT: ``[N, C, H, W]`` images -> ``[N, out_dim]`` (features if ``out_dim=0``).

    28×28 Omniglot characters with ``patch_size=7`` make 16 patches of 49 pixels. Spatial
    tokens (:meth:`token_map`): the last block's patch tokens after the final norm, the
    ``[CLS]`` token left out, ``[N, g·g, d_model]``.
    """

    def __init__(self, in_channels: int = 1, out_dim: int = 5, d_model: int = 64,
                 image_size: int = 28, patch_size: int = 7, depth: int = 4, n_heads: int = 4,
                 mlp_ratio: float = 2.0, dropout: float = 0.0) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size={image_size} is not divisible by "
                             f"patch_size={patch_size}")
        self.patch_size = patch_size
        self.grid = image_size // patch_size
        self.encoder = SequenceTransformer(in_channels * patch_size ** 2, out_dim, d_model,
                                           depth, n_heads, self.grid ** 2, mlp_ratio, dropout)
        self.feature_dim = self.token_dim = d_model

    def forward(self, x: Tensor, need_weights: bool = False
                ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """See :meth:`SequenceTransformer.forward`; attention is over ``[CLS]`` + patches."""
        return self.encoder(patchify(x, self.patch_size), need_weights=need_weights)

    def token_map(self, x: Tensor) -> Tensor:
        """``x [N, C, S, S]`` -> ``[N, g·g, d_model]``: the patch tokens, row-major."""
        tokens, _ = self.encoder.states(patchify(x, self.patch_size))
        return self.encoder.norm(tokens[:, 1:])

    def token_grid(self, image_size: int) -> tuple[int, int]:
        """``(g, g)``, ``g = image_size // patch_size``."""
        side = image_size // self.patch_size
        return side, side

    def patch_attention(self, weights: list[Tensor]) -> Tensor:
        """The last block's ``[CLS]`` attention over the patches, heads averaged, as
        ``[N, g, g]`` (``g × g`` patches, row-major), from ``forward(x, need_weights=True)``'s
        weights (each ``[N, n_heads, 1 + g², 1 + g²]``)."""
        cls_to_patches = weights[-1].mean(1)[:, 0, 1:]  # [N, g*g]: [CLS] row, patch columns
        return cls_to_patches.reshape(-1, self.grid, self.grid)


register_backbone("vit", lambda m, in_channels, out_dim, image_size: VisionTransformer(
    in_channels, out_dim, m.hidden, image_size, m.patch_size, m.depth, m.heads),
    patch_size_divides_image=True, heads_divide_hidden=True)
