"""Reptile: first-order meta-learning by moving toward task-adapted weights."""

from __future__ import annotations

from typing import Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from attnmeta.learners.base import Params, StepOutput, query_metrics
from attnmeta.learners.inner_loop import support_gradient
from attnmeta.learners.gradient import GradientLearner
from attnmeta.tasks.episode import Episode

__all__ = ["Reptile", "inner_adam"]


def inner_adam(grad_fn: Callable[[Params], Params], params: Params, lr: float, steps: int,
               betas: tuple[float, float] = (0.0, 0.999), eps: float = 1e-8,
               on_step: Callable[[int], None] | None = None) -> Params:
    """``steps`` of Adam (Kingma & Ba) from fresh moments, as a pure function of ``params``.

    The same arithmetic as ``torch.optim.Adam``; first order (gradients detached).
    Reptile's few-shot experiments adapt with Adam, β1 = 0. ``on_step(t)`` after step t.
    """
    beta1, beta2 = betas
    first = {n: torch.zeros_like(p) for n, p in params.items()}
    second = {n: torch.zeros_like(p) for n, p in params.items()}
    for t in range(1, steps + 1):
        grads = {n: g.detach() for n, g in grad_fn(params).items()}
        first = {n: beta1 * first[n] + (1 - beta1) * grads[n] for n in params}
        second = {n: beta2 * second[n] + (1 - beta2) * grads[n] ** 2 for n in params}
        step_size = lr / (1 - beta1**t)
        denominator_scale = (1 - beta2**t) ** 0.5
        params = {n: p - step_size * first[n] / (second[n].sqrt() / denominator_scale + eps)
                  for n, p in params.items()}
        if on_step is not None:
            on_step(t)
    return params


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
        return inner_adam(grad_fn, params, self.inner_lr, steps, on_step=on_step)

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
