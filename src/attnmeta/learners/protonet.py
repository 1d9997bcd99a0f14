"""Prototypical Networks."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnmeta.learners.base import MetaLearner, StepOutput, query_metrics
from attnmeta.tasks.episode import Episode

__all__ = ["ProtoNet", "prototypes", "prototype_logits"]


def prototypes(support_z: Tensor, support_y: Tensor, n_way: int) -> Tensor:
    """Class means: ``support_z [..., S, D]``, ``support_y [..., S]`` -> ``[..., n_way, D]``."""
    one_hot = F.one_hot(support_y, n_way).to(support_z.dtype)  # [..., S, N]
    sums = one_hot.transpose(-2, -1) @ support_z                # [..., N, D]
    return sums / one_hot.sum(-2).unsqueeze(-1)


def prototype_logits(query_z: Tensor, protos: Tensor, distance: str = "sqeuclidean") -> Tensor:
    """``query_z [..., Q, D]``, ``protos [..., N, D]`` -> logits ``[..., Q, N]``."""
    if distance == "sqeuclidean":
        return -((query_z.unsqueeze(-2) - protos.unsqueeze(-3)) ** 2).sum(-1)
    if distance == "cosine":
        return F.normalize(query_z, dim=-1) @ F.normalize(protos, dim=-1).transpose(-2, -1)
    raise ValueError(f"distance={distance!r}: expected 'sqeuclidean' or 'cosine'")


class ProtoNet(MetaLearner):
    """Prototypical Networks (Snell, Swersky & Zemel, NeurIPS 2017).

    Embeds support and query with ``encoder``; each class is the mean of its support
    embeddings; logits are negative squared Euclidean distances to the prototypes.
    """

    def __init__(self, encoder: nn.Module,
                 distance: Literal["sqeuclidean", "cosine"] = "sqeuclidean") -> None:
        super().__init__()
        if distance not in ("sqeuclidean", "cosine"):
            raise ValueError(f"distance={distance!r}: expected 'sqeuclidean' or 'cosine'")
        self.encoder = encoder
        self.distance = distance

    def embed(self, x: Tensor, leading: int) -> Tensor:
        """Encode ``x [*lead, *x_shape]`` in one batch -> ``[*lead, D]``."""
        lead = x.shape[:leading]
        return self.encoder(x.flatten(0, leading - 1)).reshape(*lead, -1)

    def logits(self, support_x: Tensor, support_y: Tensor, query_x: Tensor) -> Tensor:
        """Query logits ``[T, Q, N]`` for a batch (``[T, S, ...]`` inputs) of episodes."""
        n_way = int(support_y.max()) + 1
        # One encoder call for support and query of every task: big batches keep cores busy.
        z = self.embed(torch.cat([support_x, query_x], dim=1), leading=2)
        support_z, query_z = z[:, : support_x.shape[1]], z[:, support_x.shape[1]:]
        return prototype_logits(query_z, prototypes(support_z, support_y, n_way), self.distance)

    def training_step(self, batch: Episode) -> StepOutput:
        logits = self.logits(batch.support_x, batch.support_y, batch.query_x)
        loss = F.cross_entropy(logits.flatten(0, 1), batch.query_y.flatten())
        return StepOutput(loss, query_metrics(loss, logits, batch.query_y))

    def predict(self, support_x: Tensor, support_y: Tensor, query_x: Tensor) -> Tensor:
        with torch.no_grad():
            return self.logits(support_x[None], support_y[None], query_x[None])[0]

    def predict_batch(self, batch: Episode) -> Tensor:
        with torch.no_grad():
            return self.logits(batch.support_x, batch.support_y, batch.query_x)
