"""Reptile: first-order meta-learning by moving toward task-adapted weights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from attnmeta.learners.base import Params, StepOutput, query_metrics
from attnmeta.learners.inner_loop import adam, descend, support_gradient
from attnmeta.learners.gradient import GradientLearner, GradientOptions
from attnmeta.learners.registry import Backbone, register_learner
from attnmeta.settings import setting
from attnmeta.tasks.episode import Episode

__all__ = ["Reptile", "ReptileOptions"]


class Reptile(GradientLearner):
    """Reptile (Nichol, Achiam & Schulman, 2018, "On First-Order Meta-Learning Algorithms").

    Each task adapts θ by ``inner_steps`` of SGD (or Adam with β1 = 0, as in the paper's
    few-shot experiments: ``inner_optimizer="adam"``) on its support set to φ_t; the update is
    θ ← θ + ε (mean_t φ_t − θ). The training step returns the surrogate loss
    ½ Σ ‖θ − stopgrad(mean_t φ_t)‖², whose gradient is exactly θ − mean φ, so the shared
    training loop with ``SGD(lr=ε)`` performs the Reptile update (and Adam, as in the
    paper's few-shot experiments, uses it as its gradient). Evaluation is
    :class:`GradientLearner`'s: adapt on the support set (the same inner optimiser),
    predict the query set.

    Kernels: Reptile is first order and adapts task by task, outside ``vmap``, so it needs
    no declaration (:mod:`attnmeta.kernels`): every fast kernel is exact here.
    """

    display_name: ClassVar[str] = "Reptile"

    def __init__(
        self,
        model: torch.nn.Module,
        inner_lr: float,
        inner_steps: int = 5,
        loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
        inner_optimizer: str = "sgd",
        eval_steps: int | None = None,
    ) -> None:
        if inner_optimizer not in ("sgd", "adam"):
            raise ValueError(f"inner_optimizer={inner_optimizer!r}: expected 'sgd' or 'adam'")
        super().__init__(model, inner_lr, inner_steps, loss_fn, eval_steps=eval_steps)
        self.inner_optimizer = inner_optimizer

    def _descend(self, params: Params, frozen: dict[str, Tensor], support_x: Tensor,
                 support_y: Tensor, steps: int, on_step: Callable[[int], None] | None = None
                 ) -> Params:
        if self.inner_optimizer == "sgd":
            return super()._descend(params, frozen, support_x, support_y, steps, on_step)
        grad_fn = support_gradient(self.model, frozen, support_x, support_y, self.loss_fn)
        # Adam with β1 = 0, as the paper's few-shot experiments adapt
        return descend(grad_fn, params, adam(self.inner_lr, betas=(0.0, 0.999)), steps,
                       first_order=True, on_step=on_step)

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


@dataclass
class ReptileOptions(GradientOptions):
    """``learner.name: reptile``'s keys."""

    inner_optimizer: str = setting("sgd", choices=("sgd", "adam"))


register_learner("reptile", Reptile, lambda spec, backbone: Reptile(
    backbone.model, spec.inner_lr, spec.inner_steps, inner_optimizer=spec.inner_optimizer,
    eval_steps=spec.eval_steps), options=ReptileOptions)
