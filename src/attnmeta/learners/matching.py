"""Matching Networks: classify a query by attending over the labelled support set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnmeta.learners.base import EpisodeLearner, class_count, embed_episode
from attnmeta.learners.registry import Backbone, LearnerOptions, register_learner
from attnmeta.settings import setting

__all__ = ["MatchingNet", "MatchingOptions", "FullContextEmbedding", "matching_attention"]


def matching_attention(query_z: Tensor, support_z: Tensor, scale: float) -> Tensor:
    """Attention ``a(x̂, x_i) = softmax_i(scale · cos(f(x̂), g(x_i)))``.

    ``query_z [..., Q, D]``, ``support_z [..., S, D]`` -> weights ``[..., Q, S]``.
    """
    cosine = F.normalize(query_z, dim=-1) @ F.normalize(support_z, dim=-1).transpose(-2, -1)
    return torch.softmax(scale * cosine, dim=-1)


class FullContextEmbedding(nn.Module):
    """Matching Networks' full-context embeddings (Vinyals et al. 2016, appendix A).

    ``g``: the support embeddings re-read by a bidirectional LSTM,
    ``g(x_i) = g'(x_i) + h_i→ + h_i←``, so each depends on the whole support set (and, as
    in the paper, on its order). ``f``: each query is refined by ``steps`` steps of an
    LSTM that attends over ``g(S)`` — ``ĥ_k, c_k = LSTM(f'(x̂), h_{k-1} + r_{k-1}, c_{k-1})``,
    ``h_k = ĥ_k + f'(x̂)``, ``r_k = Σ_i softmax(h_k · g(x_i)) g(x_i)``. The paper
    concatenates ``[h, r]`` as the LSTM state; summing them keeps the state at width ``D``
    (as most re-implementations do).
    """

    def __init__(self, dim: int, steps: int = 5) -> None:
        super().__init__()
        if steps < 1:
            raise ValueError(f"fce_steps={steps}: expected at least 1 attention step")
        self.support_lstm = nn.LSTM(dim, dim, batch_first=True, bidirectional=True)
        self.query_cell = nn.LSTMCell(dim, dim)
        self.steps = steps

    def embed_support(self, support_z: Tensor) -> Tensor:
        """``g``: ``[T, S, D]`` -> ``[T, S, D]``."""
        both_directions, _ = self.support_lstm(support_z)
        forward, backward = both_directions.chunk(2, dim=-1)
        return support_z + forward + backward

    def embed_query(self, query_z: Tensor, support_g: Tensor) -> Tensor:
        """``f``: queries ``[T, Q, D]`` attending over ``g(S)`` ``[T, S, D]`` -> ``[T, Q, D]``."""
        tasks, queries, dim = query_z.shape
        flat_query = query_z.reshape(tasks * queries, dim)
        hidden, cell = flat_query, torch.zeros_like(flat_query)
        for _ in range(self.steps):
            attention = torch.softmax(hidden.view(tasks, queries, dim)
                                      @ support_g.transpose(1, 2), dim=-1)
            read = (attention @ support_g).reshape(tasks * queries, dim)
            hidden, cell = self.query_cell(flat_query, (hidden + read, cell))
            hidden = hidden + flat_query
        return hidden.view(tasks, queries, dim)


class MatchingNet(EpisodeLearner):
    """Matching Networks (Vinyals et al., NeurIPS 2016), optionally with full-context
    embeddings (``fce=True``, :class:`FullContextEmbedding`; needs ``feature_dim``).

    The prediction is the attention-weighted sum of the support labels,
    ``P(y | x̂, S) = Σ_i a(x̂, x_i) onehot(y_i)``; the returned logits are its logarithm,
    so cross-entropy on them is the paper's negative log-likelihood. ``scale`` sharpens
    the cosine similarities (with raw cosines in [-1, 1] the softmax is nearly uniform).
    """

    display_name: ClassVar[str] = "Matching Networks"

    def __init__(self, encoder: nn.Module, scale: float = 10.0, fce: bool = False,
                 feature_dim: int | None = None, fce_steps: int = 5) -> None:
        super().__init__()
        if fce and feature_dim is None:
            raise ValueError("fce=True needs feature_dim, the encoder's output width")
        self.encoder = encoder
        self.scale = scale
        self.context = FullContextEmbedding(feature_dim, fce_steps) if fce else None

    def attention(self, support_x: Tensor, query_x: Tensor) -> Tensor:
        """Query-over-support attention ``[T, Q, S]`` for a batch of episodes."""
        return self.feature_attention(*embed_episode(self.encoder, support_x, query_x))

    def feature_attention(self, support_z: Tensor, query_z: Tensor) -> Tensor:
        """:meth:`attention` from embeddings ``[T, S, D]``, ``[T, Q, D]``."""
        if self.context is not None:
            support_z = self.context.embed_support(support_z)
            query_z = self.context.embed_query(query_z, support_z)
        return matching_attention(query_z, support_z, self.scale)

    def logits_from_features(self, support_z: Tensor, support_y: Tensor, query_z: Tensor
                             ) -> Tensor:
        """``log P(y | x̂, S)`` as ``[T, Q, N]``."""
        n_way = class_count(support_y)
        weights = self.feature_attention(support_z, query_z)
        probabilities = weights @ F.one_hot(support_y, n_way).to(weights.dtype)
        return torch.log(probabilities.clamp_min(torch.finfo(weights.dtype).tiny))

    def attention_map_names(self) -> tuple[str, ...]:
        return ("query_support",)

    def feature_attention_maps(self, support_z: Tensor, support_y: Tensor, query_z: Tensor
                               ) -> dict[str, Tensor]:
        """``{"query_support": [Q, S]}``: the weights ``a(x̂, x_i)`` behind the prediction
        (one task, no task dim)."""
        return {"query_support": self.feature_attention(support_z[None], query_z[None])[0]}


@dataclass
class MatchingOptions(LearnerOptions):
    """``learner.name: matching``'s keys."""

    scale: float = setting(10.0, above=0.0)       # cosine sharpening
    fce: bool = False                             # full-context embeddings
    fce_steps: int = setting(5, at_least=1, at_most=100)


def _build(spec: MatchingOptions, backbone: Backbone) -> MatchingNet:
    # full-context embeddings are sized by the features; plain matching reads any encoder
    width = backbone.width(spec.name) if spec.fce else backbone.feature_dim
    return MatchingNet(backbone.model, scale=spec.scale, fce=spec.fce, feature_dim=width,
                       fce_steps=spec.fce_steps)


register_learner("matching", MatchingNet, _build, options=MatchingOptions)
