"""Model-Agnostic Meta-Learning, with first-order, Meta-SGD and ANIL variants."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from attnmeta import kernels
from attnmeta.errors import ConfigError
from attnmeta.learners.base import Params, StepOutput, query_metrics
from attnmeta.learners.gradient import GradientLearner, GradientOptions, Strategy
from attnmeta.learners.inner_loop import inner_sgd
from attnmeta.learners.registry import Backbone, register_learner
from attnmeta.tasks.episode import Episode

__all__ = ["MAML", "MAMLOptions", "head_modules"]


class MAML(GradientLearner):
    """MAML (Finn, Abbeel & Levine, ICML 2017, "Model-Agnostic Meta-Learning for Fast
    Adaptation of Deep Networks"), over any ``nn.Module``.

    The inner loop adapts a copy of the parameters by gradient descent on each task's
    support set, as a pure function (``torch.func.functional_call`` + ``torch.func.grad``);
    the meta-loss is the mean query loss at the adapted parameters, differentiated through
    the inner loop (second order) unless ``first_order`` (FOMAML). Evaluation (adapt,
    predict) is :class:`GradientLearner`'s.

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
            ``"vmap"`` all tasks at once with ``torch.vmap``, ``"compiled"`` one task after
            another, each task's meta-gradient (inner loop, query loss and the gradient
            through both: one ``torch.func.grad_and_value``) compiled by ``torch.compile``
            once per shape. All give the same meta-gradient; which is faster depends on the
            model (see ``benchmarks/maml_strategies.py`` and ``benchmarks/results/speed.md``).
            ``"compiled"`` needs a model without buffers (batch norm with running statistics
            would update them inside the compiled graph), and runs best on one worker
            (``train.workers`` copies the learner per meta-batch: each copy compiles again).
        eval_steps: inner steps of ``predict`` / ``predict_batch`` when given no ``steps``;
            default ``inner_steps``.
        prototype_head: Proto-MAML (Triantafillou et al., ICLR 2020, "Meta-Dataset", Sec. 3):
            the name of the model's last linear layer (``"head"``; ``"encoder.head"`` in the
            vision transformer), whose ``[n_way, d]`` weight and ``[n_way]`` bias each task's
            inner loop starts at ``2 c_k`` and ``-|c_k|^2`` instead of the meta-learned
            values, ``c_k`` the mean feature (the layer's input) of class ``k``'s support
            examples: the first logits are then ProtoNet's squared-Euclidean ones up to a
            per-query constant, so a pretrained encoder starts each task where prototypes
            are instead of at a random head. The initialisation is differentiable (the
            meta-gradient reaches the encoder through it, as in the paper).
    """

    display_name: ClassVar[str] = "MAML"
    strategies: ClassVar[tuple[str, ...]] = ("loop", "vmap", "compiled")
    head_inits: ClassVar[tuple[str, ...]] = ("meta", "prototypes")

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
        eval_steps: int | None = None,
        prototype_head: str | None = None,
    ) -> None:
        super().__init__(model, inner_lr, inner_steps, loss_fn, eval_steps=eval_steps,
                         learn_inner_lr=learn_inner_lr, adapt_only=adapt_only,
                         strategy=strategy)
        self.first_order = first_order
        self.prototype_head = prototype_head
        if prototype_head is not None:
            head = dict(model.named_modules()).get(prototype_head)
            if not isinstance(head, nn.Linear) or head.bias is None:
                raise ValueError(f"prototype_head={prototype_head!r}: expected the name of the "
                                 "model's last nn.Linear (with a bias)")
            missing = [n for n in (f"{prototype_head}.weight", f"{prototype_head}.bias")
                       if n not in self.adapted_names]
            if missing:
                raise ValueError(f"prototype_head={prototype_head!r}: {missing} not adapted "
                                 f"(adapt_only={list(adapt_only or [])}): expected the head "
                                 "among the adapted parameters")
        if strategy == "compiled" and any(True for _ in model.buffers()):
            raise ValueError("strategy='compiled': expected a model without buffers (batch "
                             "norm with running statistics updates them in place); use "
                             "batch statistics (norm='batch') or strategy='loop'")
        self._compiled_task_gradient: Callable | None = None  # built on first use

    def _task_query(
        self, params: Params, frozen: dict[str, Tensor], lrs: dict[str, Tensor | float],
        support_x: Tensor, support_y: Tensor, query_x: Tensor, query_y: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """One task: adapt on the support set, return (query loss, query predictions)."""
        params = self._task_start(params, frozen, support_x, support_y)
        # torch.func.grad where the task runs under vmap or compile (both trace it), and for
        # Proto-MAML: its head is a function of the body's weights, and the inner gradient
        # is the partial one, the head held as a variable of its own; autograd.grad would
        # also follow the path from the body through the prototypes into the head
        by_func = self.strategy != "loop" or self.prototype_head is not None
        adapted = inner_sgd(self.model, params, frozen, support_x, support_y, self.loss_fn,
                            lrs, self.inner_steps, self.first_order, under_vmap=by_func)
        predictions = functional_call(self.model, {**frozen, **adapted}, (query_x,))
        return self.loss_fn(predictions, query_y), predictions

    def meta_loss_and_predictions(self, batch: Episode) -> tuple[Tensor, Tensor]:
        """Mean query loss after adaptation over the batch, and query predictions ``[T, ...]``."""
        if self.strategy == "compiled":
            return self._compiled_meta_loss(batch)
        params, frozen = self._split_params()
        lrs = self._step_sizes()
        vmap = self.strategy == "vmap"
        with kernels.differentiable(vmap=vmap, double_backward=not self.first_order):
            if vmap:
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

    def _task_start(self, params: Params, frozen: dict[str, Tensor], support_x: Tensor,
                    support_y: Tensor) -> Params:
        """The adapted parameters a task's inner loop starts from: the meta-parameters, with
        Proto-MAML's head set from the support prototypes (``prototype_head``)."""
        if self.prototype_head is None:
            return params
        weight, bias = f"{self.prototype_head}.weight", f"{self.prototype_head}.bias"
        n_way, width = params[weight].shape
        # The head's input, by the same forward with the head as the identity map (x I + 0
        # is x exactly), so no backbone needs a second, feature-only forward.
        as_identity = {weight: torch.eye(width, dtype=params[weight].dtype,
                                         device=params[weight].device),
                       bias: params[bias].new_zeros(width)}
        features = functional_call(self.model, {**frozen, **params, **as_identity},
                                   (support_x,))
        # [S, n_way] one-hot without F.one_hot, which has no vmap rule
        one_hot = (support_y[:, None] == torch.arange(n_way, device=support_y.device)
                   ).to(features.dtype)
        prototypes = (one_hot.T @ features) / one_hot.sum(0).clamp(min=1)[:, None]
        return {**params, weight: 2 * prototypes, bias: -(prototypes ** 2).sum(-1)}

    # -- strategy "compiled" ----------------------------------------------------------------
    def _task_loss_of(self, weights: dict[str, Tensor], support_x: Tensor, support_y: Tensor,
                      query_x: Tensor, query_y: Tensor) -> tuple[Tensor, Tensor]:
        """One task's (query loss, query predictions) as a function of ``weights`` (this
        learner's named parameters: ``model.*`` and Meta-SGD's ``inner_lrs.*``)."""
        model_weights = {n.removeprefix("model."): w for n, w in weights.items()
                         if n.startswith("model.")}
        adapted = set(self.adapted_names)
        params = {n: w for n, w in model_weights.items() if n in adapted}
        frozen = {n: w for n, w in model_weights.items() if n not in adapted}
        if len(self.inner_lrs):
            lrs: dict[str, Tensor | float] = {
                n: weights["inner_lrs." + n.replace(".", "/")] for n in self.adapted_names}
        else:
            lrs = {n: self.inner_lr for n in self.adapted_names}
        loss, predictions = self._task_query(params, frozen, lrs, support_x, support_y,
                                             query_x, query_y)
        return loss, predictions.detach()

    def _compiled_meta_loss(self, batch: Episode) -> tuple[Tensor, Tensor]:
        """The mean query loss, each task's meta-gradient computed by one compiled function
        (``torch.compile`` over ``torch.func.grad_and_value``: dynamo traces through the
        nested ``torch.func.grad`` of the inner loop, so the second-order graph is one
        forward graph; AOT autograd's compiled backward is not twice differentiable). The
        loss returned delivers those gradients on ``backward()``, so the training loop is
        the same for every strategy."""
        if self._compiled_task_gradient is None:
            # Every compiled learner's graphs share one code object (torch.func's wrapper),
            # whose cache holds 8 graphs by default: past it dynamo silently runs eager.
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
            self._compiled_task_gradient = torch.compile(
                torch.func.grad_and_value(self._task_loss_of, has_aux=True), dynamic=False)
        named = dict(self.named_parameters())
        weights = {n: w.detach() for n, w in named.items()}
        total: dict[str, Tensor] = {}
        losses, predictions = [], []
        # under torch.func transforms: the layers' plain kernels (as for vmap)
        with kernels.differentiable(vmap=True, double_backward=not self.first_order):
            for t in range(batch.num_tasks):
                task = batch.task(t)
                grads, (loss, prediction) = self._compiled_task_gradient(
                    weights, task.support_x, task.support_y, task.query_x, task.query_y)
                total = grads if not total else {n: total[n] + g for n, g in grads.items()}
                losses.append(loss.detach())
                predictions.append(prediction)
        mean_grads = [total[n] / batch.num_tasks for n in named]
        loss = _KnownGradient.apply(torch.stack(losses).mean(), mean_grads, *named.values())
        return loss, torch.stack(predictions)

    def meta_loss(self, batch: Episode) -> Tensor:
        """Mean query loss after adaptation; a scalar differentiable w.r.t. the meta-parameters."""
        return self.meta_loss_and_predictions(batch)[0]

    def training_step(self, batch: Episode) -> StepOutput:
        loss, predictions = self.meta_loss_and_predictions(batch)
        return StepOutput(loss, query_metrics(loss, predictions, batch.query_y))


class _KnownGradient(torch.autograd.Function):
    """``value`` (a scalar) whose ``backward()`` delivers already computed ``grads`` to
    ``inputs`` (scaled by the incoming gradient, so ``(loss * share).backward()`` works)."""

    @staticmethod
    def forward(ctx, value: Tensor, grads: list[Tensor], *inputs: Tensor) -> Tensor:
        ctx.grads = grads
        return value.detach().clone()

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        return (None, None, *(g * grad_output for g in ctx.grads))


def head_modules(model: nn.Module) -> dict[str, nn.Module]:
    """The model's classification heads by name: modules named ``head`` at any depth
    (Conv4's ``head``, the vision transformer's ``encoder.head``)."""
    return {name: module for name, module in model.named_modules()
            if name.split(".")[-1] == "head"}


def _linear_head(model: nn.Module) -> str:
    """The name of the model's one linear :func:`head_modules` entry (what Proto-MAML sets)."""
    heads = [name for name, module in head_modules(model).items()
             if isinstance(module, nn.Linear)]
    if len(heads) != 1:
        raise ConfigError("config key 'learner.head_init' is 'prototypes': expected a backbone "
                          f"with one linear layer named 'head', found {heads or 'none'}")
    return heads[0]


@dataclass
class MAMLOptions(GradientOptions):
    """``learner.name: maml`` and ``fomaml``'s keys."""

    learn_inner_lr: bool = False                  # Meta-SGD
    adapt_only: list[str] | None = None           # ANIL: parameter name prefixes to adapt


def _build(spec: MAMLOptions, backbone: Backbone, first_order: bool = False) -> MAML:
    model = backbone.model
    if spec.strategy == "compiled" and any(True for _ in model.buffers()):
        raise ConfigError("config key 'learner.strategy' is 'compiled': expected a model "
                          f"without buffers (model.norm is {backbone.config.norm!r}: batch "
                          "norm with running statistics updates them in place); use "
                          "model.norm: batch, or strategy: loop")
    head = _linear_head(model) if spec.head_init == "prototypes" else None
    if head is not None and spec.adapt_only is not None and not any(
            f"{head}.weight".startswith(prefix) for prefix in spec.adapt_only):
        raise ConfigError(f"config key 'learner.adapt_only' is {spec.adapt_only}: expected "
                          f"it to include the head {head!r} that learner.head_init: "
                          "prototypes sets")
    return MAML(model, spec.inner_lr, spec.inner_steps, first_order=first_order,
                learn_inner_lr=spec.learn_inner_lr, adapt_only=spec.adapt_only,
                strategy=spec.strategy, eval_steps=spec.eval_steps, prototype_head=head)


register_learner("maml", MAML, _build, options=MAMLOptions)
register_learner("fomaml", MAML, lambda spec, backbone: _build(spec, backbone, first_order=True),
                 options=MAMLOptions)
