"""Reptile: first-order meta-learning by moving toward task-adapted weights."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from attnmeta.learners.base import StepOutput, query_metrics
from attnmeta.learners.maml import MAML
from attnmeta.tasks.episode import Episode

__all__ = ["Reptile"]


class Reptile(MAML):
    """Reptile (Nichol, Achiam & Schulman, 2018, "On First-Order Meta-Learning Algorithms").

    Each task adapts θ by ``inner_steps`` of SGD on its support set to φ_t; the update is
    θ ← θ + ε (mean_t φ_t − θ). The training step returns the surrogate loss
    ½ Σ ‖θ − stopgrad(mean_t φ_t)‖², whose gradient is exactly θ − mean φ, so the shared
    training loop with ``SGD(lr=ε)`` performs the Reptile update (and Adam, as in the
    paper's few-shot experiments, uses it as its gradient). Evaluation is MAML's: adapt
    on the support set, predict the query set.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        inner_lr: float,
        inner_steps: int = 5,
        loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
    ) -> None:
        super().__init__(model, inner_lr, inner_steps, first_order=True, loss_fn=loss_fn)

    def training_step(self, batch: Episode) -> StepOutput:
        adapted, predictions = [], []
        for t in range(batch.num_tasks):
            task = batch.task(t)
            params = self.adapt(task.support_x, task.support_y)
            adapted.append(params)
            with torch.no_grad():  # query predictions only for progress display
                predictions.append(self.forward_with(params, task.query_x))
        target = {n: torch.stack([a[n] for a in adapted]).mean(0) for n in self.adapted_names}
        meta_params = dict(self.model.named_parameters())
        loss = 0.5 * sum(((meta_params[n] - target[n]) ** 2).sum() for n in self.adapted_names)
        query_predictions = torch.stack(predictions)
        query_loss = self.loss_fn(query_predictions.flatten(0, 1), batch.query_y.flatten(0, 1))
        metrics = query_metrics(query_loss, query_predictions, batch.query_y)
        metrics["distance"] = loss.detach().item()
        return StepOutput(loss, metrics)
