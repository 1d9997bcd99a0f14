"""What every meta-learner shares: the step interface the one training loop calls, and the
functional inner loop (SGD on a parameter dict) that MAML and Reptile both use."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch
from torch import Tensor, nn
from torch.func import functional_call

from attnmeta.tasks.episode import Episode

__all__ = ["MetaLearner", "StepOutput", "Params", "inner_sgd", "query_metrics"]

Params = dict[str, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]


@dataclass
class StepOutput:
    """``loss``: the scalar the training loop back-propagates; ``metrics``: floats to log."""

    loss: Tensor
    metrics: dict[str, float] = field(default_factory=dict)


def query_metrics(loss: Tensor, predictions: Tensor, query_y: Tensor) -> dict[str, float]:
    """Loss, plus accuracy when the targets are class indices."""
    metrics = {"loss": loss.detach().item()}
    if not query_y.is_floating_point():
        metrics["accuracy"] = (predictions.argmax(-1) == query_y).float().mean().item()
    return metrics


class MetaLearner(nn.Module):
    """Base class. Subclasses implement :meth:`training_step` and :meth:`predict`.

    ``training_step(batch)`` gets an :class:`Episode` batch (leading task dim ``T``) and
    returns a :class:`StepOutput` whose ``loss`` the optimiser minimises over
    ``learner.parameters()``. ``predict(support_x, support_y, query_x)`` takes one task and
    returns its query predictions (logits or regression outputs).
    """

    def training_step(self, batch: Episode) -> StepOutput:
        raise NotImplementedError

    def predict(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, **kwargs) -> Tensor:
        raise NotImplementedError

    def predict_batch(self, batch: Episode, **kwargs) -> Tensor:
        """Query predictions ``[T, Q, ...]`` for every task of a batch (one task at a time)."""
        return torch.stack([
            self.predict(task.support_x, task.support_y, task.query_x, **kwargs)
            for task in (batch.task(i) for i in range(batch.num_tasks))
        ])


def inner_sgd(
    model: nn.Module,
    params: Params,
    frozen: Mapping[str, Tensor],
    support_x: Tensor,
    support_y: Tensor,
    loss_fn: LossFn,
    lrs: Mapping[str, Tensor | float],
    steps: int,
    first_order: bool,
) -> Params:
    """``steps`` of gradient descent on the support loss, as a pure function of ``params``.

    ``params`` are the tensors being adapted; ``frozen`` holds the rest of the model's
    parameters and buffers (fed to ``functional_call`` unchanged). ``torch.func.grad``
    computes the inner gradient, so the update is differentiable by an ordinary outer
    ``backward()`` (second-order MAML) and also runs under ``torch.vmap``. With
    ``first_order`` the inner gradients are detached (FOMAML / Reptile).
    """

    def support_loss(adapted: Params) -> Tensor:
        return loss_fn(functional_call(model, {**frozen, **adapted}, (support_x,)), support_y)

    grad_fn = torch.func.grad(support_loss)
    for _ in range(steps):
        grads = grad_fn(params)
        if first_order:
            grads = {name: g.detach() for name, g in grads.items()}
        params = {name: p - lrs[name] * grads[name] for name, p in params.items()}
    return params

