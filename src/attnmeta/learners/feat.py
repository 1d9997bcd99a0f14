"""FEAT: few-shot embedding adaptation with a set-to-set transformer over prototypes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnmeta.attention import MultiHeadAttention
from attnmeta.learners.base import (EpisodeLearner, StepOutput, class_count, embed_episode,
                                    query_metrics)
from attnmeta.learners.protonet import prototype_logits, prototypes
from attnmeta.learners.registry import Backbone, LearnerOptions, register_learner
from attnmeta.norm import LayerNorm
from attnmeta.settings import PROBABILITY, setting
from attnmeta.tasks.episode import Episode

__all__ = ["FEAT", "FEATOptions", "SetToSetAttention"]


class SetToSetAttention(nn.Module):
    """FEAT's set-to-set function: ``LayerNorm(x + Dropout(MHA(x, x, x)))`` over a set.

    ``x [B, L, D]`` -> ``([B, L, D], weights [B, H, L, L] or None)``. Every element is
    re-embedded in the context of the whole set; permuting the set permutes the output.
    """

    def __init__(self, dim: int, n_heads: int = 1, dropout: float = 0.5) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(dim, n_heads)
        self.dropout = nn.Dropout(dropout)
        self.norm = LayerNorm(dim)

    def forward(self, x: Tensor, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        attended, weights = self.attn(x, need_weights=need_weights)
        return self.norm(x + self.dropout(attended)), weights


class FEAT(EpisodeLearner):
    """FEAT (Ye, Hu, Zhan & Sha, CVPR 2020, "Few-Shot Learning via Embedding Adaptation
    with Set-to-Set Functions").

    Prototypes (class means of the support embeddings) are adapted *as a set* by a
    transformer, so each class's prototype moves in the context of the other classes of
    the task; queries are classified by negative squared distance to the adapted
    prototypes over ``temperature``. Training adds ``balance`` × FEAT's contrastive
    regulariser: each class's instances (support and query) are adapted as a set by the
    same transformer, and every instance must be nearest to its own class's adapted centre.

    Args:
        encoder: ``[n, *x_shape] -> [n, feature_dim]``.
        feature_dim: width ``D`` of the embeddings.
        n_heads, dropout: of the set-to-set transformer (FEAT: 1 head, dropout 0.5).
        temperature, aux_temperature: divide the main and regulariser logits.
        balance: weight of the regulariser (0 turns it off).
    """

    display_name: ClassVar[str] = "FEAT"

    def __init__(self, encoder: nn.Module, feature_dim: int, n_heads: int = 1,
                 dropout: float = 0.5, temperature: float = 1.0, aux_temperature: float = 1.0,
                 balance: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        self.set_to_set = SetToSetAttention(feature_dim, n_heads, dropout)
        self.temperature, self.aux_temperature, self.balance = temperature, aux_temperature, balance

    def adapted_prototypes(self, support_z: Tensor, support_y: Tensor, n_way: int,
                           need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """``[T, N, D]`` adapted prototypes and the prototype-to-prototype attention."""
        return self.set_to_set(prototypes(support_z, support_y, n_way), need_weights)

    def logits_from_features(self, support_z: Tensor, support_y: Tensor, query_z: Tensor
                             ) -> Tensor:
        """``[T, Q, N]``: distances to the adapted prototypes over ``temperature``."""
        adapted, _ = self.adapted_prototypes(support_z, support_y, class_count(support_y))
        return prototype_logits(query_z, adapted) / self.temperature

    def contrastive_loss(self, instances_z: Tensor, labels: Tensor, n_way: int) -> Tensor:
        """FEAT's regulariser on ``instances_z [T, M, D]`` with labels ``[T, M]``.

        Each class must hold the same number of instances (true of N-way episodes).
        """
        tasks, count, dim = instances_z.shape
        order = torch.argsort(labels, dim=-1, stable=True)        # group instances by class
        grouped = instances_z.gather(1, order.unsqueeze(-1).expand(-1, -1, dim))
        sets = grouped.reshape(tasks * n_way, count // n_way, dim)
        centres = self.set_to_set(sets)[0].mean(dim=1).reshape(tasks, n_way, dim)
        logits = prototype_logits(instances_z, centres) / self.aux_temperature
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten())

    def training_step(self, batch: Episode) -> StepOutput:
        n_way = class_count(batch.support_y)
        support_z, query_z = embed_episode(self.encoder, batch.support_x, batch.query_x)
        logits = self.logits_from_features(support_z, batch.support_y, query_z)
        main_loss = F.cross_entropy(logits.flatten(0, 1), batch.query_y.flatten())
        metrics = query_metrics(main_loss, logits, batch.query_y)
        loss = main_loss
        if self.balance > 0:
            aux_loss = self.contrastive_loss(torch.cat([support_z, query_z], dim=1),
                                             torch.cat([batch.support_y, batch.query_y], dim=1),
                                             n_way)
            loss = main_loss + self.balance * aux_loss
            metrics["contrastive_loss"] = aux_loss.detach().item()
        return StepOutput(loss, metrics)

    def attention_map_names(self) -> tuple[str, ...]:
        return ("prototypes",)

    def feature_attention_maps(self, support_z: Tensor, support_y: Tensor, query_z: Tensor
                               ) -> dict[str, Tensor]:
        """``{"prototypes": [H, N, N]}``: each prototype's attention over the task's
        prototypes in the set-to-set transformer (one task, no task dim)."""
        _, weights = self.adapted_prototypes(support_z[None], support_y[None],
                                             class_count(support_y), need_weights=True)
        return {"prototypes": weights[0]}


@dataclass
class FEATOptions(LearnerOptions):
    """``learner.name: feat``'s keys."""

    heads: int = setting(1, at_least=1, at_most=64)      # set-to-set heads
    dropout: float = setting(0.5, **PROBABILITY)
    temperature: float = setting(1.0, above=0.0)         # the logits / it
    aux_temperature: float = setting(1.0, above=0.0)     # the regulariser's logits / it
    balance: float = setting(0.1, at_least=0.0)          # the weight of the regulariser


register_learner("feat", FEAT, lambda spec, backbone: FEAT(
    backbone.model, backbone.width(spec.name), n_heads=spec.heads, dropout=spec.dropout,
    temperature=spec.temperature, aux_temperature=spec.aux_temperature, balance=spec.balance),
    options=FEATOptions)
