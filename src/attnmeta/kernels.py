"""One switch for the fast kernels whose gradients are exact only outside ``torch.vmap``.

Conv4's batch norm and max-pool have two implementations each: PyTorch's native kernels
(fast; exact under ``torch.func.grad`` and ordinary autograd, second order included) and
a formula written with plain tensor ops (exact under ``torch.vmap`` too). Measured on
torch 2.13: the native batch-norm kernel under ``vmap`` gives second-order meta-gradients
off by 0.5% after 1 inner step and 15% after 5 (float64), while in a per-task loop it is
exact and the plain-op formula makes a MAML meta-batch on Omniglot shapes 31% slower
(32 tasks, one thread: 3.56 s against 2.72 s). Learners that ``vmap`` over
tasks switch the native kernels off around that code with :func:`native_kernels`.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

__all__ = ["native_kernels", "native_kernels_enabled"]

# Per thread: worker threads of one meta-batch (train.workers) set it independently.
_switch = threading.local()


@contextmanager
def native_kernels(enabled: bool) -> Iterator[None]:
    """Allow (or forbid) the native batch-norm and fast max-pool kernels inside this block
    (in this thread)."""
    previous, _switch.native = native_kernels_enabled(), enabled
    try:
        yield
    finally:
        _switch.native = previous


def native_kernels_enabled() -> bool:
    return getattr(_switch, "native", True)
