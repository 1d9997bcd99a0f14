"""The fast max-pool and the native batch-norm path against PyTorch's stock kernels."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnmeta import kernels
from attnmeta.models import Conv4
from attnmeta.norm import BatchStatNorm2d
from attnmeta.pooling import max_pool2d


@pytest.mark.parametrize("shape,kernel,stride", [((2, 3, 8, 8), 2, 2), ((2, 3, 7, 9), 2, 2),
                                                  ((1, 2, 9, 9), 3, 2)])
def test_max_pool_equals_stock_values_and_gradient_with_ties(shape, kernel, stride):
    # Small integers make many ties: the first maximum must win, as in PyTorch's kernel.
    x = torch.randint(0, 3, shape, generator=torch.Generator().manual_seed(0)).double()
    weights = torch.randn(F.max_pool2d(x, kernel, stride).shape, dtype=torch.float64)
    fast_x, stock_x = x.clone().requires_grad_(), x.clone().requires_grad_()
    fast, stock = max_pool2d(fast_x, kernel, stride), F.max_pool2d(stock_x, kernel, stride)
    assert torch.equal(fast, stock)
    (fast * weights).sum().backward()
    (stock * weights).sum().backward()
    assert torch.equal(fast_x.grad, stock_x.grad)


def test_max_pool_second_order_and_torch_func():
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda t: max_pool2d(t, 2), (x,))
    torch.autograd.gradgradcheck(lambda t: max_pool2d(t, 2), (x,))
    weights = torch.randn(2, 3, 3, 3, dtype=torch.float64)
    fast = torch.func.grad(lambda t: (max_pool2d(t, 2) ** 2 * weights).sum())(x)
    stock = torch.func.grad(lambda t: (F.max_pool2d(t, 2) ** 2 * weights).sum())(x)
    assert torch.equal(fast, stock)


def test_native_and_plain_batch_norm_agree_in_value_and_second_order():
    torch.manual_seed(0)
    norm = BatchStatNorm2d(3).double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.normal_()
    x = torch.randn(4, 3, 5, 5, dtype=torch.float64, requires_grad=True)

    def grad_of_grad(native: bool) -> tuple[torch.Tensor, ...]:
        with kernels.differentiable(vmap=not native):  # vmap: the plain formula
            out = norm(x)
            (gx,) = torch.autograd.grad((out ** 3).sum(), x, create_graph=True)
            return (out, *torch.autograd.grad(gx.pow(2).sum(), [x, norm.weight]))

    for native_value, plain_value in zip(grad_of_grad(True), grad_of_grad(False)):
        torch.testing.assert_close(native_value, plain_value, rtol=1e-10, atol=1e-10)


def test_conv4_block_equals_the_textbook_order():
    """Conv4 pools before its ReLU (cheaper); values and input gradients equal
    conv -> BN -> ReLU -> stock max-pool with the same weights."""
    torch.manual_seed(0)
    model = Conv4(in_channels=1, out_dim=0, hidden=8, image_size=28).double()
    textbook = nn.Sequential(*[
        nn.Sequential(block[0], block[1], nn.ReLU(), nn.MaxPool2d(2)) for block in model.features
    ])
    x = torch.randn(6, 1, 28, 28, dtype=torch.float64, requires_grad=True)
    ours = model(x)
    with kernels.differentiable(vmap=True):  # stock kernels in the reference
        reference = textbook(x).flatten(1)
    torch.testing.assert_close(ours, reference, rtol=1e-10, atol=1e-12)
    weights = torch.randn_like(ours)
    ours_grad = torch.autograd.grad((ours * weights).sum(), x)[0]
    reference_grad = torch.autograd.grad((reference * weights).sum(), x)[0]
    torch.testing.assert_close(ours_grad, reference_grad, rtol=1e-9, atol=1e-12)


def test_max_pool_keeps_a_channels_last_input_channels_last_with_the_same_values():
    x = torch.randint(0, 3, (2, 4, 8, 8), generator=torch.Generator().manual_seed(0)).double()
    last = x.contiguous(memory_format=torch.channels_last)
    pooled = max_pool2d(last, 2)
    assert pooled.is_contiguous(memory_format=torch.channels_last) and not pooled.is_contiguous()
    assert torch.equal(pooled, F.max_pool2d(x, 2))
    assert max_pool2d(x, 2).is_contiguous()  # NCHW in, NCHW out, as before
