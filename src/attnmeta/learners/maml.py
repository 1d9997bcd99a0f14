"""Model-Agnostic Meta-Learning, with first-order, Meta-SGD and ANIL variants."""

from __future__ import annotations

from typing import Callable, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from attnmeta.attention import fused_attention
from attnmeta.kernels import native_kernels
from attnmeta.learners.base import MetaLearner, Params, StepOutput, inner_sgd, query_metrics
from attnmeta.tasks.episode import Episode

__all__ = ["MAML"]

Strategy = Literal["loop", "vmap"]


class MAML(MetaLearner):
    """MAML (Finn, Abbeel & Levine, ICML 2017), over any ``nn.Module``.

    The inner loop adapts a copy of the parameters by gradient descent on each task's
    support set, as a pure function (``torch.func.functional_call`` + ``torch.func.grad``);
    the meta-loss is the mean query loss at the adapted parameters, differentiated through
    the inner loop (second order) unless ``first_order`` (FOMAML).

    Args:
        model: maps a task's inputs ``[n, *x_shape]`` to predictions ``[n, *y_shape]``.
        inner_lr: step size of the inner loop (the initial value if learned).
        inner_steps: gradient steps per task at meta-training time; 0 trains the model on
            the query sets directly (the "pretrained on all tasks" baseline).
        first_order: drop second-order terms (detach the inner gradients).
        loss_fn: ``loss_fn(predictions, targets) -> scalar``; cross-entropy by default.
        learn_inner_lr: Meta-SGD (Li et al., 2017): a learnable step size per parameter
            element, meta-trained with the model.
        adapt_only: ANIL (Raghu et al., ICLR 2020): names (or name prefixes) of the
            parameters to adapt, e.g. ``["head."]``; the others stay at the meta-parameters.
        strategy: how a meta-batch's inner loops run: ``"loop"`` one task after another,
            ``"vmap"`` all tasks at once with ``torch.vmap``. Both give the same meta-gradient;
            which is faster depends on the model (see ``benchmarks/maml_strategies.py``).
    """

    def __init__(
        self,
        model: nn.Module,
        inner_lr: float,
        inner_steps: int = 1,
        first_order: bool = False,
        loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
        learn_inner_lr: bool = False,
        adapt_only: Sequence[str] | None = None,
        strategy: Strategy = "loop",
    ) -> None:
        super().__init__()
        if strategy not in ("loop", "vmap"):
            raise ValueError(f"strategy={strategy!r}: expected 'loop' or 'vmap'")
        if inner_steps < 0:
            raise ValueError(f"inner_steps={inner_steps}: expected >= 0")
        self.model = model
        self.inner_lr = inner_lr
        self.inner_steps = inner_steps
        self.first_order = first_order
        self.loss_fn = loss_fn
        self.strategy = strategy
        names = [name for name, _ in model.named_parameters()]
        if adapt_only is None:
            self.adapted_names = names
        else:
            self.adapted_names = [n for n in names if any(n.startswith(p) for p in adapt_only)]
            if not self.adapted_names:
                raise ValueError(
                    f"adapt_only={list(adapt_only)} matches none of the model's parameters {names}"
                )
        # ParameterDict keys may not contain '.', so Meta-SGD step sizes use '/' in their keys.
        self.inner_lrs = nn.ParameterDict(
            {
                name.replace(".", "/"): nn.Parameter(torch.full_like(p, inner_lr))
                for name, p in model.named_parameters()
                if name in self.adapted_names
            }
            if learn_inner_lr
            else {}
        )

    # -- the functional pieces -------------------------------------------------------------
    def _split_params(self) -> tuple[Params, dict[str, Tensor]]:
        """(parameters to adapt, everything else the model needs: other params, buffers)."""
        adapted = set(self.adapted_names)
        params = {n: p for n, p in self.model.named_parameters() if n in adapted}
        frozen = {n: p for n, p in self.model.named_parameters() if n not in adapted}
        frozen.update(dict(self.model.named_buffers()))
        return params, frozen

    def _step_sizes(self) -> dict[str, Tensor | float]:
        if len(self.inner_lrs):
            return {n: self.inner_lrs[n.replace(".", "/")] for n in self.adapted_names}
        return {n: self.inner_lr for n in self.adapted_names}

    def _task_query(
        self, params: Params, frozen: dict[str, Tensor], lrs: dict[str, Tensor | float],
        support_x: Tensor, support_y: Tensor, query_x: Tensor, query_y: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """One task: adapt on the support set, return (query loss, query predictions)."""
        adapted = inner_sgd(self.model, params, frozen, support_x, support_y, self.loss_fn,
                            lrs, self.inner_steps, self.first_order,
                            under_vmap=self.strategy == "vmap")
        predictions = functional_call(self.model, {**frozen, **adapted}, (query_x,))
        return self.loss_fn(predictions, query_y), predictions

    # -- public API ------------------------------------------------------------------------
    def meta_loss_and_predictions(self, batch: Episode) -> tuple[Tensor, Tensor]:
        """Mean query loss after adaptation over the batch, and query predictions ``[T, ...]``."""
        params, frozen = self._split_params()
        lrs = self._step_sizes()
        # The fused attention kernel has neither a double backward nor a vmap rule; native
        # batch norm gives wrong second-order gradients under vmap (attnmeta.kernels).
        loop = self.strategy == "loop"
        with fused_attention(self.first_order and loop), native_kernels(loop):
            if self.strategy == "vmap":
                per_task = torch.vmap(self._task_query, in_dims=(None, None, None, 0, 0, 0, 0))
                losses, predictions = per_task(params, frozen, lrs, batch.support_x,
                                               batch.support_y, batch.query_x, batch.query_y)
                return losses.mean(), predictions
            losses, predictions = [], []
            for t in range(batch.num_tasks):
                task = batch.task(t)
                loss, prediction = self._task_query(params, frozen, lrs, task.support_x,
                                                    task.support_y, task.query_x, task.query_y)
                losses.append(loss)
                predictions.append(prediction)
            return torch.stack(losses).mean(), torch.stack(predictions)

    def meta_loss(self, batch: Episode) -> Tensor:
        """Mean query loss after adaptation; a scalar differentiable w.r.t. the meta-parameters."""
        return self.meta_loss_and_predictions(batch)[0]

    def training_step(self, batch: Episode) -> StepOutput:
        loss, predictions = self.meta_loss_and_predictions(batch)
        return StepOutput(loss, query_metrics(loss, predictions, batch.query_y))

    def adapt(self, support_x: Tensor, support_y: Tensor, steps: int | None = None) -> Params:
        """Parameters adapted to one task's support set (detached from the meta-parameters).

        Returns the full parameter-and-buffer dict for :meth:`forward_with`.
        """
        params, frozen = self._split_params()
        params = {n: p.detach() for n, p in params.items()}
        frozen = {n: t.detach() for n, t in frozen.items()}
        lrs = {n: lr.detach() if isinstance(lr, Tensor) else lr
               for n, lr in self._step_sizes().items()}
        steps = self.inner_steps if steps is None else steps
        adapted = inner_sgd(self.model, params, frozen, support_x, support_y, self.loss_fn,
                            lrs, steps, first_order=True, under_vmap=self.strategy == "vmap")
        return {**frozen, **adapted}

    def forward_with(self, params: Params, x: Tensor) -> Tensor:
        """The model's output at the given (e.g. adapted) parameters."""
        return functional_call(self.model, params, (x,))

    def predict(self, support_x: Tensor, support_y: Tensor, query_x: Tensor,
                steps: int | None = None) -> Tensor:
        with torch.no_grad():
            return self.forward_with(self.adapt(support_x, support_y, steps), query_x)

    def predict_batch(self, batch: Episode, steps: int | None = None) -> Tensor:
        if self.strategy == "loop":
            return super().predict_batch(batch, steps=steps)
        per_task = torch.vmap(lambda sx, sy, qx: self.predict(sx, sy, qx, steps=steps))
        with fused_attention(False), native_kernels(False):
            return per_task(batch.support_x, batch.support_y, batch.query_x)
