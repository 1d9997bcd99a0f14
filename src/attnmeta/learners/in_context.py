"""In-context learners: a network reads the support set and predicts the query, no steps."""

from __future__ import annotations

from typing import Callable

import torch.nn.functional as F
from torch import Tensor, nn

from attnmeta.learners.base import EpisodeLearner

__all__ = ["InContextLearner"]


class InContextLearner(EpisodeLearner):
    """Meta-train a set-conditioned model ``model(support_x, support_y, query_x)`` end to end.

    The SNAIL / CAML / attentive-neural-process family (Mishra et al., ICLR 2018;
    Fifty et al., ICLR 2024; Kim et al., ICLR 2019): adaptation is a forward pass in which
    the query attends over the support set. ``model`` takes batched tasks
    (``[T, S, ...]``, ``[T, S, ...]``, ``[T, Q, ...]``) and returns ``[T, Q, ...]``.
    """

    def __init__(self, model: nn.Module,
                 loss_fn: Callable[[Tensor, Tensor], Tensor] = F.mse_loss) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def logits(self, support_x: Tensor, support_y: Tensor, query_x: Tensor) -> Tensor:
        return self.model(support_x, support_y, query_x)
