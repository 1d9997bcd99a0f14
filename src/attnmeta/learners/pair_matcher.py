"""A pairwise comparator: self-attention within each image, cross-attention between a
query and each support image, one match score per pair."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnmeta.attention import MultiHeadAttention, TransformerBlock
from attnmeta.learners.base import EpisodeLearner, class_count
from attnmeta.learners.registry import Backbone, LearnerOptions, register_learner
from attnmeta.models.spatial import unflatten_tokens
from attnmeta.norm import LayerNorm
from attnmeta.settings import PROBABILITY, setting

__all__ = ["PairMatcher", "PairMatcherOptions", "CrossAttentionBlock"]


class CrossAttentionBlock(nn.Module):
    """Pre-norm cross-attention block: ``x + MHA(LN(x), LN(context))``, then
    ``x + MLP(LN(x))``. ``x [B, L, d]`` attends over ``context [B, M, d]`` ->
    ``([B, L, d], weights [B, H, L, M] or None)``."""

    def __init__(self, d_model: int, n_heads: int, mlp_ratio: float = 2.0,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.norm_x, self.norm_context = LayerNorm(d_model), LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, n_heads, dropout=dropout)
        self.norm_mlp = LayerNorm(d_model)
        hidden = int(d_model * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(d_model, hidden), nn.GELU(),
                                 nn.Linear(hidden, d_model), nn.Dropout(dropout))

    def forward(self, x: Tensor, context: Tensor, need_weights: bool = False
                ) -> tuple[Tensor, Tensor | None]:
        attended, weights = self.attn(self.norm_x(x), self.norm_context(context),
                                      need_weights=need_weights)
        x = x + attended
        return x + self.mlp(self.norm_mlp(x)), weights


class PairMatcher(EpisodeLearner):
    """A relational pair comparator over spatial tokens: the comparator of Polis & Ilin,
    "A Relational Model for One-Shot Classification" (ESANN 2021, arXiv:2111.04313), in
    the family of Attentive Recurrent Comparators (Shyam, Gupta & Dukkipati, ICML 2017),
    which glimpse back and forth between the two images of a pair.

    Each image's ``L`` tokens (flattened, :class:`~attnmeta.models.spatial.SpatialTokens`)
    are projected to ``width`` and given learned position embeddings; one pre-norm
    self-attention block (shared) relates the parts *within* each image; then for every
    (query, support image) pair one cross-attention block (shared, both directions) lets
    each image's tokens attend to the other's; each side is mean-pooled (``a``, ``b``) and
    a small MLP on ``[a; b; |a - b|; a ⊙ b]`` gives the pair's match score. A class's
    logit is the mean score of its support images. Positions index locations within an
    image, never the support order: relabelling the classes permutes the logits and
    reordering the support set leaves them as they are (both tested).

    Cost: the self-attention runs once per image (``(S + Q)·L²`` scores per head), the
    cross-attention once per pair and direction: ``2·Q·S·L²`` scores per head and
    ``2·Q·S·L`` tokens through the block's MLP, all pairs of a task in one batch. A
    20-way 1-shot episode with ``Q`` queries is ``20·Q`` pairs: Conv4 at 28×28 (``L = 9``)
    gives ``3 240·Q`` scores per head (100 queries, 4 heads, float32: 5.2 MB of weights);
    EfficientNet-Lite0 at 224 (``L = 49``) gives ``96 040·Q`` (100 queries, 4 heads:
    154 MB), and the
    pairs' tokens ``2·20·Q·L·width`` floats (64 wide: 50 MB). Prototype learners compare
    ``Q × N`` vectors.

    Args:
        encoder: ``[n, *x_shape] -> [n, L·D]`` flattened spatial tokens.
        grid: ``(H, W)`` of the token map; token_dim: ``D``.
        width: the blocks' width; heads: their attention heads; dropout: inside them.
    """

    display_name: ClassVar[str] = "Pair matcher"
    reads_spatial_tokens: ClassVar[bool] = True

    def __init__(self, encoder: nn.Module, grid: tuple[int, int], token_dim: int,
                 width: int = 64, heads: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width={width}: expected it divisible by heads={heads}")
        self.encoder = encoder
        self.grid, self.token_dim = tuple(grid), token_dim
        self.num_tokens = grid[0] * grid[1]
        self.embed = nn.Linear(token_dim, width)
        self.position = nn.Parameter(torch.randn(self.num_tokens, width) * 0.02)
        self.within = TransformerBlock(width, heads, 2.0, dropout)
        self.between = CrossAttentionBlock(width, heads, 2.0, dropout)
        self.norm = LayerNorm(width)
        self.score = nn.Sequential(nn.Linear(4 * width, width), nn.GELU(), nn.Linear(width, 1))

    def _within(self, z: Tensor) -> Tensor:
        """Flattened tokens ``[T, M, L·D]`` -> each image's self-attended ``[T, M, L, w]``."""
        tokens = self.embed(unflatten_tokens(z, self.num_tokens, self.token_dim)) + self.position
        # view_as, not sizes read off a shape: an ONNX trace keeps the query count dynamic
        return self.within(tokens.flatten(0, 1))[0].view_as(tokens)

    def pair_scores(self, support_z: Tensor, query_z: Tensor, need_weights: bool = False
                    ) -> tuple[Tensor, Tensor | None]:
        """``(scores [T, Q, S], weights)`` from ``[T, S, L·D]``, ``[T, Q, L·D]``: every
        pair's match score and, with ``need_weights``, the query-to-support cross-attention
        ``[T, Q, S, H, L, L]``."""
        support, query = self._within(support_z), self._within(query_z)  # [T, ·, L, w]
        pairs = query[:, :, None].expand(-1, -1, support.shape[1], -1, -1)  # [T, Q, S, L, w]
        query_side = pairs.flatten(0, 2)                                 # [T·Q·S, L, w]
        support_side = support[:, None].expand_as(pairs).flatten(0, 2)
        # both directions, the same weights
        query_out, weights = self.between(query_side, support_side, need_weights)
        support_out, _ = self.between(support_side, query_side)
        a, b = self.norm(query_out).mean(1), self.norm(support_out).mean(1)  # [T·Q·S, w]
        scores = self.score(torch.cat([a, b, (a - b).abs(), a * b], dim=-1))
        grid = pairs[..., 0, 0]                                          # [T, Q, S]
        if weights is not None:
            weights = weights.unflatten(0, grid.shape)
        return scores.view_as(grid), weights

    def logits_from_features(self, support_z: Tensor, support_y: Tensor, query_z: Tensor
                             ) -> Tensor:
        """``[T, Q, N]``: the mean match score of each class's support images."""
        scores, _ = self.pair_scores(support_z, query_z)
        one_hot = F.one_hot(support_y, class_count(support_y)).to(scores.dtype)  # [T, S, N]
        return scores @ one_hot / one_hot.sum(1, keepdim=True)

    def attention_map_names(self) -> tuple[str, ...]:
        return ("correspondence",)

    def feature_attention_maps(self, support_z: Tensor, support_y: Tensor, query_z: Tensor
                               ) -> dict[str, Tensor]:
        """``{"correspondence": [Q, L, S, L]}`` for one task (no task dim): how much each
        query location attended to each location of each support image in their pair's
        cross-attention (heads averaged; each pair's rows sum to 1)."""
        _, weights = self.pair_scores(support_z[None], query_z[None], need_weights=True)
        return {"correspondence": weights[0].mean(2).permute(0, 2, 1, 3)}


@dataclass
class PairMatcherOptions(LearnerOptions):
    """``learner.name: pair_matcher``'s keys."""

    width: int = setting(64, at_least=1, at_most=4096)   # the attention blocks' width
    heads: int = setting(4, at_least=1, at_most=64)      # their heads (dividing width)
    dropout: float = setting(0.0, **PROBABILITY)

    def problems(self, config: Any) -> list[tuple[str, Any, str]]:
        """The heads split the width."""
        if self.width % self.heads:
            return [("learner.width", self.width, f"divisible by learner.heads={self.heads}")]
        return []


def _build(spec: PairMatcherOptions, backbone: Backbone) -> PairMatcher:
    grid, token_dim = backbone.tokens(spec.name)
    return PairMatcher(backbone.model, grid, token_dim, width=spec.width, heads=spec.heads,
                       dropout=spec.dropout)


register_learner("pair_matcher", PairMatcher, _build, options=PairMatcherOptions)
