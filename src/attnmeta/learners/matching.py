"""Matching Networks: classify a query by attending over the labelled support set."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnmeta.learners.base import EpisodeLearner, embed_episode

__all__ = ["MatchingNet", "matching_attention"]


def matching_attention(query_z: Tensor, support_z: Tensor, scale: float) -> Tensor:
    """Attention ``a(x̂, x_i) = softmax_i(scale · cos(f(x̂), g(x_i)))``.

    ``query_z [..., Q, D]``, ``support_z [..., S, D]`` -> weights ``[..., Q, S]``.
    """
    cosine = F.normalize(query_z, dim=-1) @ F.normalize(support_z, dim=-1).transpose(-2, -1)
    return torch.softmax(scale * cosine, dim=-1)


class MatchingNet(EpisodeLearner):
    """Matching Networks (Vinyals et al., NeurIPS 2016), without full-context embeddings.

    The prediction is the attention-weighted sum of the support labels,
    ``P(y | x̂, S) = Σ_i a(x̂, x_i) onehot(y_i)``; the returned logits are its logarithm,
    so cross-entropy on them is the paper's negative log-likelihood. ``scale`` sharpens
    the cosine similarities (with raw cosines in [-1, 1] the softmax is nearly uniform).
    """

    def __init__(self, encoder: nn.Module, scale: float = 10.0) -> None:
        super().__init__()
        self.encoder = encoder
        self.scale = scale

    def attention(self, support_x: Tensor, query_x: Tensor) -> Tensor:
        """Query-over-support attention ``[T, Q, S]`` for a batch of episodes."""
        support_z, query_z = embed_episode(self.encoder, support_x, query_x)
        return matching_attention(query_z, support_z, self.scale)

    def logits(self, support_x: Tensor, support_y: Tensor, query_x: Tensor) -> Tensor:
        """``log P(y | x̂, S)`` as ``[T, Q, N]``."""
        n_way = int(support_y.max()) + 1
        weights = self.attention(support_x, query_x)
        probabilities = weights @ F.one_hot(support_y, n_way).to(weights.dtype)
        return torch.log(probabilities.clamp_min(torch.finfo(weights.dtype).tiny))
