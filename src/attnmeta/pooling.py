"""Max-pooling with PyTorch's channels-last forward kernel and its ordinary backward.

On the CPU, ``F.max_pool2d`` on a contiguous (NCHW) batch of Conv4 activations
``[75, 64, 28, 28]`` is several times slower than the channels-last kernel, layout copy
there and back included, which returns the same values and the same argmax indices
(timings: ``benchmarks/results/design_timings.md``). Max-pooling was the largest single
cost in a MAML meta-batch, and whole-network channels-last was slower (batch norm and the
1-channel first convolution lose more than pooling gains), so only the pooling forward
changes layout. The backward
is ``aten.max_pool2d_with_indices_backward``, so second order (its own derivative) and
``torch.func.grad`` work unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnmeta.kernels import native_kernels_allowed

__all__ = ["max_pool2d", "MaxPool2d"]


class _ChannelsLastMaxPool(torch.autograd.Function):
    """``x [N, C, H, W]`` -> ``(y [N, C, H', W'], argmax indices)``, no padding/dilation."""

    @staticmethod
    def forward(x: Tensor, kernel_size: list[int], stride: list[int]) -> tuple[Tensor, Tensor]:
        y, indices = torch.ops.aten.max_pool2d_with_indices(
            x.contiguous(memory_format=torch.channels_last), kernel_size, stride)
        return y.contiguous(), indices.contiguous()

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, kernel_size, stride = inputs
        ctx.mark_non_differentiable(output[1])
        ctx.save_for_backward(x, output[1])
        ctx.kernel_size, ctx.stride = kernel_size, stride

    @staticmethod
    def backward(ctx, grad_y: Tensor, grad_indices: Tensor | None):
        x, indices = ctx.saved_tensors
        grad_x = torch.ops.aten.max_pool2d_with_indices_backward(
            grad_y, x, ctx.kernel_size, ctx.stride, [0, 0], [1, 1], False, indices)
        return grad_x, None, None


def max_pool2d(x: Tensor, kernel_size: int, stride: int | None = None) -> Tensor:
    """``F.max_pool2d(x, kernel_size, stride)`` for ``x [N, C, H, W]``: same values, same
    gradient (first maximum wins ties, as in PyTorch), faster forward on the CPU. Where
    the enclosing code declared ``vmap`` (:func:`attnmeta.kernels.differentiable`; the
    autograd function has no batching rule), and for a channels-last ``x`` (an inference
    copy's activations, :func:`attnmeta.learners.precision.inference_copy`), it is
    ``F.max_pool2d`` itself, layout kept."""
    stride = kernel_size if stride is None else stride
    if x.dim() != 4 or x.device.type != "cpu" or not native_kernels_allowed() \
            or (x.is_contiguous(memory_format=torch.channels_last)
                and not x.is_contiguous()):  # channels-last already: its kernel reads it
        return F.max_pool2d(x, kernel_size, stride)
    return _ChannelsLastMaxPool.apply(x, [kernel_size] * 2, [stride] * 2)[0]


class MaxPool2d(nn.Module):
    """``nn.MaxPool2d(kernel_size, stride)`` (no padding) computed by :func:`max_pool2d`."""

    def __init__(self, kernel_size: int, stride: int | None = None) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride

    def forward(self, x: Tensor) -> Tensor:
        return max_pool2d(x, self.kernel_size, self.stride)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"
