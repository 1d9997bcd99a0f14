"""Prototypical Networks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch.nn.functional as F
from torch import Tensor, nn

from attnmeta.learners.base import EpisodeLearner, class_count
from attnmeta.learners.registry import Backbone, LearnerOptions, register_learner
from attnmeta.settings import setting

__all__ = ["ProtoNet", "ProtoNetOptions", "prototypes", "prototype_logits"]


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


class ProtoNet(EpisodeLearner):
    """Prototypical Networks (Snell, Swersky & Zemel, NeurIPS 2017).

    Embeds support and query with ``encoder``; each class is the mean of its support
    embeddings; logits are negative squared Euclidean distances to the prototypes, or
    cosines (``distance="cosine"``, Chen et al., ICLR 2019), divided by ``temperature``: it
    leaves every prediction as it is and sets how sure the probabilities are (cosines lie in
    [-1, 1], so at temperature 1 even a clear match gets a flat softmax). With ``center``
    (cosine only), the unit-length support and query vectors are first centred on the mean
    of the episode's support vectors, the centring of SimpleShot (Wang et al., 2019, there
    with the training classes' mean) taken from the support set alone, so that no statistic of
    the queries is used: what all the classes share no longer counts as a match (measured on
    frozen EfficientNet-Lite0 features, cross-style emoji 20-way 1-shot 78.30 -> 82.29%
    Google to Twitter, 79.99 -> 80.31% the other way: ``benchmarks/results/emoji.md``).
    """

    display_name: ClassVar[str] = "Prototypical Networks"

    def __init__(self, encoder: nn.Module,
                 distance: Literal["sqeuclidean", "cosine"] = "sqeuclidean",
                 temperature: float = 1.0, center: bool = False) -> None:
        super().__init__()
        if distance not in ("sqeuclidean", "cosine"):
            raise ValueError(f"distance={distance!r}: expected 'sqeuclidean' or 'cosine'")
        self.encoder = encoder
        self.distance = distance
        if center and distance != "cosine":
            raise ValueError("center=True: expected distance='cosine' (a squared distance "
                             "does not change when both sides move)")
        self.temperature = temperature
        self.center = center

    def logits_from_features(self, support_z: Tensor, support_y: Tensor, query_z: Tensor
                             ) -> Tensor:
        """Query logits ``[T, Q, N]`` from embeddings ``[T, S, D]``, ``[T, Q, D]``."""
        n_way = class_count(support_y)
        if self.center:
            support_z, query_z = F.normalize(support_z, dim=-1), F.normalize(query_z, dim=-1)
            mean = support_z.mean(-2, keepdim=True)
            support_z, query_z = support_z - mean, query_z - mean
        return prototype_logits(query_z, prototypes(support_z, support_y, n_way),
                                self.distance) / self.temperature


@dataclass
class ProtoNetOptions(LearnerOptions):
    """``learner.name: protonet``'s keys."""

    distance: str = setting("sqeuclidean", choices=("sqeuclidean", "cosine"))
    center: bool = False                          # cosine: centre on the support mean
    temperature: float = setting(1.0, above=0.0)  # logits / it

    def problems(self, config: Any) -> list[tuple[str, Any, str]]:
        """Centring needs the cosine distance."""
        if self.center and self.distance != "cosine":
            return [("learner.center", self.center, "false unless learner.distance='cosine' "
                     "(centring does not change a squared distance)")]
        return []


register_learner("protonet", ProtoNet, lambda spec, backbone: ProtoNet(
    backbone.model, distance=spec.distance, temperature=spec.temperature, center=spec.center),
    options=ProtoNetOptions)
