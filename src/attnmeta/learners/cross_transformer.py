"""CrossTransformers: query-aligned prototypes, attending from each query location over
every location of a class's support images."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnmeta.attention import scaled_dot_product_attention
from attnmeta.learners.base import EpisodeLearner, class_count
from attnmeta.learners.registry import Backbone, LearnerOptions, register_learner
from attnmeta.models.spatial import unflatten_tokens
from attnmeta.settings import setting

__all__ = ["CrossTransformer", "CrossTransformerOptions", "group_by_class"]


def group_by_class(tokens: Tensor, support_y: Tensor, n_way: int) -> tuple[Tensor, Tensor, Tensor]:
    """The support tokens ``[T, S, L, F]`` gathered by class: ``([T, N, K·L, F], keep
    [T, N, K·L], rank [T, S])`` where ``K`` is the largest number of shots of a class,
    ``keep`` marks the slots a support image fills (classes with fewer shots are padded)
    and ``rank`` is each support image's place within its class (support order).

    Grouping, rather than masking the other classes out of one softmax over all ``S·L``
    support tokens, keeps the attention at ``Q·L × S·L`` scores instead of ``N`` times that.
    """
    tasks, shots, length, width = tokens.shape
    one_hot = F.one_hot(support_y, n_way)                            # [T, S, N]
    rank = ((one_hot.cumsum(1) - 1) * one_hot).sum(-1)               # [T, S]
    k_max = int(one_hot.sum(1).max())                                # one read-back
    slot = (support_y * k_max + rank)[..., None, None].expand(-1, -1, length, width)
    grouped = tokens.new_zeros(tasks, n_way * k_max, length, width).scatter(1, slot, tokens)
    # a class of c shots fills its first c slots
    keep = torch.arange(k_max, device=tokens.device) < one_hot.sum(1)[..., None]  # [T, N, K]
    return (grouped.reshape(tasks, n_way, k_max * length, width),
            keep[..., None].expand(-1, -1, -1, length).reshape(tasks, n_way, k_max * length),
            rank)


class CrossTransformer(EpisodeLearner):
    """CrossTransformers (Doersch, Gupta & Zisserman, "CrossTransformers: spatially-aware
    few-shot transfer", NeurIPS 2020, arXiv:2007.11498), section 3.2.

    The encoder returns ``L = H·W`` spatial tokens of width ``D`` per image, flattened
    (:class:`~attnmeta.models.spatial.SpatialTokens`). One linear key head ``W_k`` (the
    paper's key and query heads, shared: queries ``q_p = W_k x_p``, keys
    ``k_jm = W_k s_jm``) and one value head ``W_v`` (``v_jm = W_v s_jm``, ``w_p = W_v x_p``),
    both 1×1 convolutions in the paper, here linear maps over each token. For query location
    ``p`` and class ``n``, attention over all locations ``m`` of all support images ``j`` of
    class ``n``::

        a_{jmp} = softmax over (j in n, m) of  q_p · k_jm / sqrt(d_k)
        t_{n,p} = Σ_{j,m} a_{jmp} v_jm                 (the query-aligned prototype)
        d(x, n) = (1/L) Σ_p ||w_p - t_{n,p}||²,        logits = -d / temperature.

    With ``heads > 1`` the key and value widths split into heads, each with its own
    softmax, and ``t`` joins them (the paper has one head). Keys, values and the per-class
    softmax need no position and no support order: relabelling the classes permutes the
    logits and reordering the support set leaves them as they are (both tested).

    Cost per task: ``Q·L × S·L`` attention scores (``× heads``), ``(Q + S)·L·D·(d_k + d_v)``
    multiply-adds for the heads and ``N·Q·L·d_v`` for the distances. Conv4 at 28×28
    (``L = 9``), 20-way 1-shot, 100 queries: 900 × 180 = 162 000 scores per head, 0.65 MB;
    EfficientNet-Lite0 at 224 (``L = 49``): 4 900 × 980 = 4.8 M scores, 19 MB per task and
    head (float32). Prototype learners compare ``Q × N`` vectors.

    Args:
        encoder: ``[n, *x_shape] -> [n, L·D]`` flattened spatial tokens.
        grid: ``(H, W)`` of the token map.
        token_dim: ``D``.
        key_dim, value_dim: total widths of the key and value heads (the paper: 128 each).
        heads: attention heads (dividing both widths).
        temperature: divides the logits.
    """

    display_name: ClassVar[str] = "CrossTransformer"
    reads_spatial_tokens: ClassVar[bool] = True

    def __init__(self, encoder: nn.Module, grid: tuple[int, int], token_dim: int,
                 key_dim: int = 128, value_dim: int = 128, heads: int = 1,
                 temperature: float = 1.0) -> None:
        super().__init__()
        if key_dim % heads or value_dim % heads:
            raise ValueError(f"key_dim={key_dim}, value_dim={value_dim}: expected both "
                             f"divisible by heads={heads}")
        self.encoder = encoder
        self.grid, self.token_dim, self.heads = tuple(grid), token_dim, heads
        self.num_tokens = grid[0] * grid[1]
        # bias-free as 1×1 convolutions: a value bias cancels in w_p - t_{n,p}
        self.key = nn.Linear(token_dim, key_dim, bias=False)
        self.value = nn.Linear(token_dim, value_dim, bias=False)
        self.temperature = temperature

    def _heads(self, x: Tensor) -> Tensor:
        # [..., L, heads·d] -> [..., heads, L, d]
        return x.unflatten(-1, (self.heads, -1)).transpose(-3, -2)

    def aligned_prototypes(self, support_z: Tensor, support_y: Tensor, query_z: Tensor,
                           need_weights: bool = False
                           ) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
        """``(t [T, N, H, Q·L, d_v], w [T, 1, H, Q·L, d_v], weights, rank)`` from flattened
        tokens ``[T, S, L·D]``, ``[T, S]``, ``[T, Q, L·D]``: the query-aligned prototypes
        of every query location, the queries' own values, the attention
        ``[T, N, H, Q·L, K·L]`` over each class's grouped support tokens (``None`` unless
        ``need_weights``) and each support image's rank in its class
        (see :func:`group_by_class`)."""
        n_way, length = class_count(support_y), self.num_tokens
        support = unflatten_tokens(support_z, length, self.token_dim)    # [T, S, L, D]
        query = unflatten_tokens(query_z, length, self.token_dim)        # [T, Q, L, D]
        grouped, keep, rank = group_by_class(support, support_y, n_way)  # [T, N, K·L, D]
        keys = self._heads(self.key(grouped))                            # [T, N, H, K·L, d_k]
        values = self._heads(self.value(grouped))                        # [T, N, H, K·L, d_v]
        # flatten, not sizes read off a shape: an ONNX trace keeps the query count dynamic
        flat_query = query.flatten(1, 2)[:, None]                        # [T, 1, Q·L, D]
        q = self._heads(self.key(flat_query)).expand(-1, n_way, -1, -1, -1)
        w = self._heads(self.value(flat_query))                          # [T, 1, H, Q·L, d_v]
        # padded slots (classes with fewer shots) are masked out; none in N-way K-shot
        mask = None if bool(keep.all()) else keep[:, :, None, None, :]
        result = scaled_dot_product_attention(q, keys, values, mask=mask,
                                              return_weights=need_weights)
        aligned, weights = result if need_weights else (result, None)
        return aligned, w, weights, rank

    def logits_from_features(self, support_z: Tensor, support_y: Tensor, query_z: Tensor
                             ) -> Tensor:
        """``[T, Q, N]``: minus the mean over query locations of the squared distance
        between the query's values and the class's query-aligned prototype, over
        ``temperature``."""
        aligned, w, _, _ = self.aligned_prototypes(support_z, support_y, query_z)
        squared = ((w - aligned) ** 2).sum(dim=(2, 4))                   # [T, N, Q·L]
        tasks, n_way = squared.shape[:2]
        distance = squared.reshape(tasks, n_way, -1, self.num_tokens).mean(-1)  # [T, N, Q]
        return -distance.transpose(1, 2) / self.temperature

    def attention_map_names(self) -> tuple[str, ...]:
        return ("correspondence",)

    def feature_attention_maps(self, support_z: Tensor, support_y: Tensor, query_z: Tensor
                               ) -> dict[str, Tensor]:
        """``{"correspondence": [Q, L, S, L]}`` for one task (no task dim): how much each
        query location attended to each location of each support image when the query was
        compared with that image's class (heads averaged; each class's block sums to 1)."""
        _, _, weights, rank = self.aligned_prototypes(support_z[None], support_y[None],
                                                      query_z[None], need_weights=True)
        length = self.num_tokens
        per_class = weights[0].mean(1).unflatten(-1, (-1, length))      # [N, Q·L, K, L]
        per_class = per_class.unflatten(1, (-1, length))                 # [N, Q, L, K, L]
        chosen = per_class[support_y, :, :, rank[0]]                     # [S, Q, L, L]
        return {"correspondence": chosen.permute(1, 2, 0, 3)}


@dataclass
class CrossTransformerOptions(LearnerOptions):
    """``learner.name: cross_transformer``'s keys."""

    heads: int = setting(1, at_least=1, at_most=64)           # attention heads
    key_dim: int = setting(128, at_least=1, at_most=4096)     # width of the key head
    value_dim: int = setting(128, at_least=1, at_most=4096)   # width of the value head
    temperature: float = setting(1.0, above=0.0)              # the logits / it

    def problems(self, config: Any) -> list[tuple[str, Any, str]]:
        """The heads split both widths."""
        return [(f"learner.{key}", value, f"divisible by learner.heads={self.heads}")
                for key, value in (("key_dim", self.key_dim), ("value_dim", self.value_dim))
                if value % self.heads]


def _build(spec: CrossTransformerOptions, backbone: Backbone) -> CrossTransformer:
    grid, token_dim = backbone.tokens(spec.name)
    return CrossTransformer(backbone.model, grid, token_dim, key_dim=spec.key_dim,
                            value_dim=spec.value_dim, heads=spec.heads,
                            temperature=spec.temperature)


register_learner("cross_transformer", CrossTransformer, _build,
                 options=CrossTransformerOptions)
