"""The functional inner loop of the gradient learners: gradient descent on a support set as a
pure function of a parameter dict (``torch.func.functional_call``), differentiable by an
outer ``backward()`` for second-order MAML, and batchable under ``torch.vmap``.

The optimiser is one abstraction, :class:`InnerOptimizer`, in the style of optax's
``GradientTransformation`` and torchopt's functional optimisers: a pair of pure functions
over parameter dicts (``init(params) -> state``, ``step(params, grads, state, t) ->
(params, state)``), so an update never modifies a tensor in place and an outer ``backward()``
or ``vmap`` sees through it. :func:`sgd` (MAML, Meta-SGD, ANIL, Reptile) and :func:`adam`
(Reptile's few-shot setting, test-time fine-tuning) are the two built; :func:`descend` runs
any of them on a gradient function, and :func:`inner_sgd` is SGD on a support loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn
from torch.func import functional_call

from attnmeta.learners.base import Params

__all__ = ["support_gradient", "InnerOptimizer", "sgd", "adam", "descend", "inner_sgd"]

LossFn = Callable[[Tensor, Tensor], Tensor]
OptState = dict[str, Any]  # an optimiser's own tensors by name (Adam's moments); {} for SGD


@dataclass(frozen=True)
class InnerOptimizer:
    """An optimiser as pure functions over parameter dicts (optax / torchopt style).

    ``init(params)`` gives the state before the first step; ``step(params, grads, state,
    t)`` gives the parameters and state after step ``t`` (1-based), as new tensors."""

    init: Callable[[Params], OptState]
    step: Callable[[Params, Params, OptState, int], tuple[Params, OptState]]


def sgd(lrs: Mapping[str, Tensor | float]) -> InnerOptimizer:
    """Plain gradient descent, ``p - lrs[name] * g``: a float per parameter, or a tensor
    (Meta-SGD's learned step sizes, through which an outer ``backward()`` flows)."""

    def step(params: Params, grads: Params, state: OptState, t: int
             ) -> tuple[Params, OptState]:
        return {name: p - lrs[name] * grads[name] for name, p in params.items()}, state

    return InnerOptimizer(lambda params: {}, step)


def adam(lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
         ) -> InnerOptimizer:
    """Adam (Kingma & Ba) from fresh moments: the same arithmetic as ``torch.optim.Adam``
    (Reptile's few-shot experiments use β1 = 0; P>M>F's fine-tuning the defaults)."""
    beta1, beta2 = betas

    def init(params: Params) -> OptState:
        return {"first": {n: torch.zeros_like(p) for n, p in params.items()},
                "second": {n: torch.zeros_like(p) for n, p in params.items()}}

    def step(params: Params, grads: Params, state: OptState, t: int
             ) -> tuple[Params, OptState]:
        first = {n: beta1 * state["first"][n] + (1 - beta1) * grads[n] for n in params}
        second = {n: beta2 * state["second"][n] + (1 - beta2) * grads[n] ** 2 for n in params}
        step_size = lr / (1 - beta1**t)
        denominator_scale = (1 - beta2**t) ** 0.5
        params = {n: p - step_size * first[n] / (second[n].sqrt() / denominator_scale + eps)
                  for n, p in params.items()}
        return params, {"first": first, "second": second}

    return InnerOptimizer(init, step)


def descend(grad_fn: Callable[[Params], Params], params: Params, optimizer: InnerOptimizer,
            steps: int, first_order: bool, on_step: Callable[[int], None] | None = None
            ) -> Params:
    """``steps`` of ``optimizer`` on the gradients ``grad_fn(params)``, as a pure function of
    ``params``. With ``first_order`` the gradients are detached (FOMAML, Reptile, test-time
    fine-tuning); otherwise an outer ``backward()`` differentiates through every step.
    ``on_step(t)`` is called after step ``t`` (progress of a long adaptation)."""
    state = optimizer.init(params)
    for t in range(1, steps + 1):
        if first_order:
            # The same values as detaching the gradient afterwards, but computed from
            # detached inputs, so no graph is recorded for an outer backward that would
            # never use it (faster: benchmarks/results/design_timings.md). Detached after
            # too: ``frozen`` parameters (ANIL's body) may still carry a graph into it.
            grads = grad_fn({name: p.detach() for name, p in params.items()})
            grads = {name: g.detach() for name, g in grads.items()}
        else:
            grads = grad_fn(params)
        params, state = optimizer.step(params, grads, state, t)
        if on_step is not None:
            on_step(t)
    return params


def support_gradient(model: nn.Module, frozen: Mapping[str, Tensor], support_x: Tensor,
                     support_y: Tensor, loss_fn: LossFn, under_vmap: bool = True,
                     create_graph: bool = True) -> Callable[[Params], Params]:
    """``params -> d(support loss)/d(params)``, differentiable by an outer ``backward()``
    (second order) when ``create_graph``. ``frozen`` holds the model's other parameters
    and buffers, fed to ``functional_call`` unchanged.

    ``under_vmap`` uses ``torch.func.grad``, which composes with ``torch.vmap``; otherwise
    ``torch.autograd.grad``, which cannot run inside ``vmap`` but costs less per call
    (MAML over Conv4 is slower with ``torch.func.grad`` outside ``vmap``, first and second
    order: ``benchmarks/results/design_timings.md``).
    """

    def support_loss(adapted: Params) -> Tensor:
        return loss_fn(functional_call(model, {**frozen, **adapted}, (support_x,)), support_y)

    if under_vmap:
        return torch.func.grad(support_loss)

    def by_autograd(params: Params) -> Params:
        with torch.enable_grad():
            inputs = {name: p if p.requires_grad else p.detach().requires_grad_()
                      for name, p in params.items()}
            grads = torch.autograd.grad(support_loss(inputs), list(inputs.values()),
                                        create_graph=create_graph)
        return dict(zip(inputs, grads))

    return by_autograd


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
    under_vmap: bool = True,
    on_step: Callable[[int], None] | None = None,
) -> Params:
    """``steps`` of gradient descent on the support loss, as a pure function of ``params``.

    ``params`` are the tensors being adapted, ``frozen`` the rest of the model (see
    :func:`support_gradient`). The update is differentiable by an ordinary outer
    ``backward()`` (second-order MAML); with ``under_vmap`` (the default) it also runs
    under ``torch.vmap``. With ``first_order`` the inner gradients are detached (FOMAML).
    ``on_step(k)`` is called after step ``k`` (progress of a long adaptation).
    """
    grad_fn = support_gradient(model, frozen, support_x, support_y, loss_fn, under_vmap,
                               create_graph=not first_order)
    return descend(grad_fn, params, sgd(lrs), steps, first_order, on_step)

