"""Supervised pretraining of an encoder: one classifier over every class of the train split.

The "good embedding" recipe (Chen et al., "A Closer Look at Few-shot Classification", ICLR
2019; Tian et al., "Rethinking Few-Shot Image Classification", ECCV 2020; the first stage of
Hu et al.'s P>M>F, CVPR 2022): train ``encoder`` + a linear (or, as Baseline++, a scaled
cosine) classifier with cross-entropy on plain class batches, then classify few-shot
episodes by prototypes over the frozen encoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnmeta.learners.base import EpisodeLearner, StepOutput, class_count, query_metrics
from attnmeta.learners.protonet import prototype_logits, prototypes

__all__ = ["ClassBatch", "CosineClassifier", "SupervisedClassifier"]


@dataclass
class ClassBatch:
    """A batch of labelled examples ``x [B, ...]``, ``y [B]`` (class ids of the whole split).

    The shared training loop splits it by example (``len(batch)``, see
    :class:`attnmeta.train.MetaBatch`): ``backward_chunk`` cuts it into chunks of examples
    and weights each by its share."""

    x: Tensor
    y: Tensor

    @property
    def num_examples(self) -> int:
        return self.y.shape[0]

    def __len__(self) -> int:
        """The units the training loop splits this batch into: its examples."""
        return self.num_examples

    def slice(self, start: int, stop: int) -> "ClassBatch":
        return ClassBatch(self.x[start:stop], self.y[start:stop])


class CosineClassifier(nn.Module):
    """Baseline++'s classifier: ``scale * cos(z, w_c)`` for each class weight ``w_c``."""

    def __init__(self, feature_dim: int, num_classes: int, scale: float = 10.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, feature_dim))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)  # nn.Linear's initialisation
        self.scale = scale

    def forward(self, z: Tensor) -> Tensor:
        return self.scale * F.normalize(z, dim=-1) @ F.normalize(self.weight, dim=-1).T

    @torch.no_grad()
    def imprint(self, features: Tensor, labels: Tensor) -> None:
        """Each class weight := the mean of its examples' unit-length ``features [n, D]``
        (``labels [n]`` in ``0 .. num_classes-1``, every class present): imprinted weights
        (Qi, Brown & Lowe, CVPR 2018), so the classifier starts as cosine prototypes."""
        num_classes = self.weight.shape[0]
        counts = torch.bincount(labels, minlength=num_classes)
        if labels.shape[0] != features.shape[0] or counts.shape[0] != num_classes \
                or bool((counts == 0).any()):
            raise ValueError(f"labels of {counts.shape[0]} classes ({int((counts == 0).sum())} "
                             f"without examples) for {features.shape[0]} features: expected "
                             f"every one of the {num_classes} classes, once per feature")
        sums = torch.zeros_like(self.weight).index_add_(0, labels, F.normalize(features, dim=-1))
        self.weight.copy_(sums / counts[:, None])


class SupervisedClassifier(EpisodeLearner):
    """``encoder`` trained as a ``num_classes``-way classifier (``training_step`` takes a
    :class:`ClassBatch`); few-shot prediction is by prototypes over the encoder
    (``distance``: "cosine" or "sqeuclidean"), as ProtoNets over frozen features.

    Args:
        encoder: ``[n, *x_shape] -> [n, feature_dim]``.
        classifier: "linear" (Chen et al.'s Baseline, RFS) or "cosine" (Baseline++).
        scale: the cosine classifier's logit scale.
    """

    display_name: ClassVar[str] = "Supervised pretraining"

    def __init__(self, encoder: nn.Module, feature_dim: int, num_classes: int,
                 classifier: Literal["linear", "cosine"] = "linear", scale: float = 10.0,
                 distance: Literal["cosine", "sqeuclidean"] = "cosine") -> None:
        super().__init__()
        if classifier not in ("linear", "cosine"):
            raise ValueError(f"classifier={classifier!r}: expected 'linear' or 'cosine'")
        if num_classes < 2:
            raise ValueError(f"num_classes={num_classes}: expected at least 2 classes")
        self.encoder = encoder
        self.classifier = (nn.Linear(feature_dim, num_classes) if classifier == "linear"
                           else CosineClassifier(feature_dim, num_classes, scale))
        self.distance = distance

    def training_step(self, batch: ClassBatch) -> StepOutput:  # type: ignore[override]
        # Pretraining steps on class batches; evaluation is EpisodeLearner's, by logits.
        logits = self.classifier(self.encoder(batch.x))
        loss = F.cross_entropy(logits, batch.y)
        return StepOutput(loss, query_metrics(loss, logits, batch.y))

    def logits_from_features(self, support_z: Tensor, support_y: Tensor, query_z: Tensor
                             ) -> Tensor:
        """Prototype logits ``[T, Q, N]`` from embeddings ``[T, S, D]``, ``[T, Q, D]``."""
        protos = prototypes(support_z, support_y, class_count(support_y))
        return prototype_logits(query_z, protos, self.distance)

