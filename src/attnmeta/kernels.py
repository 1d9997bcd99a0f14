"""One switch for the fast kernels: code declares how it will differentiate, layers ask.

Three layers have a fast kernel whose gradients are not exact everywhere:

- attention: PyTorch's fused ``scaled_dot_product_attention`` has no double backward and
  no ``torch.vmap`` batching rule on the CPU;
- Conv4's batch norm and max-pool: PyTorch's native kernels are exact under ordinary
  autograd and ``torch.func.grad`` (second order included) but not under ``vmap``.
  Measured on torch 2.13 (float64): the native batch-norm kernel under ``vmap`` gives
  second-order meta-gradients off by 0.5% after 1 inner step and 15% after 5, while in a
  per-task loop it is exact and the plain-op formula makes a MAML meta-batch on Omniglot
  shapes markedly slower (timings: ``benchmarks/results/design_timings.md``).

So the decision is taken here, once. Code that will ``vmap`` or double-backward through a
block declares it around that block::

    with kernels.differentiable(vmap=strategy == "vmap", double_backward=not first_order):
        loss = meta_loss(batch)

and the layers ask :func:`fused_attention_allowed` (neither) and
:func:`native_kernels_allowed` (no ``vmap``); they never guess. MAML, the policy-gradient
MAML and the gradient learners' vmapped ``predict_batch`` declare; Reptile (first order,
task by task) and the speed harness's peers (stock PyTorch layers) need nothing, so every
fast kernel runs there. Code that declares nothing gets the fast kernels.

Declarations nest by union: an inner block can add a need, never drop one, so a first-order
step inside a second-order meta-loss (or a predict inside ``vmap``) still gets the exact
kernels. The state is per thread: the worker threads of one meta-batch (``train.workers``)
each declare inside the learner's own methods.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator, NamedTuple

__all__ = ["differentiable", "fused_attention_allowed", "native_kernels_allowed", "exporting"]


class _Needs(NamedTuple):
    vmap: bool = False
    double_backward: bool = False
    export: bool = False


_state = threading.local()


def _needs() -> _Needs:
    return getattr(_state, "needs", _Needs())


@contextmanager
def differentiable(*, vmap: bool = False, double_backward: bool = False, export: bool = False
                   ) -> Iterator[None]:
    """Declare what the enclosed code (in this thread) will do with the graphs it builds.

    Args:
        vmap: the block runs under ``torch.vmap`` (or its results must equal a vmapped
            run's): only kernels with exact batching rules and gradients under ``vmap``.
        double_backward: something will differentiate the block's gradients (second-order
            MAML, ``create_graph=True``): only kernels with a double backward.
        export: the block is traced into a graph for another runtime (ONNX): only plain
            ops, which every exporter knows (the native batch norm in training mode and
            the channels-last pooling kernel are not exported).

    Nested blocks add to the enclosing declaration; leaving a block restores it.
    """
    previous = _needs()
    _state.needs = _Needs(previous.vmap or vmap, previous.double_backward or double_backward,
                          previous.export or export)
    try:
        yield
    finally:
        _state.needs = previous


def fused_attention_allowed() -> bool:
    """Whether the fused attention kernel may run here: no ``vmap`` and no double backward
    declared (it has neither a batching rule nor a double backward)."""
    needs = _needs()
    return not (needs.vmap or needs.double_backward or needs.export)


def native_kernels_allowed() -> bool:
    """Whether the native batch-norm and fast max-pool kernels may run here: no ``vmap``
    declared (their second-order gradients are wrong under ``vmap``) and no export."""
    needs = _needs()
    return not (needs.vmap or needs.export)


def exporting() -> bool:
    """Whether the enclosing code traces a graph for export: shapes must then not depend on
    the values of the example inputs (e.g. no trimming of padding to the longest sentence)."""
    return _needs().export
