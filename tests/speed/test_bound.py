"""The convolution bound: FLOP split against the closed form, its arithmetic against the
definitions, and the kernel names against this torch's profiler."""

import pytest
import torch

from attnmeta.models import Conv4
from attnmeta.speed.bound import (CONVOLUTION_KERNELS, ConvolutionBound, convolution_bound,
                                  convolution_flops, describe_bound)


def test_convolution_flops_are_the_closed_form_of_a_conv4_forward():
    model = Conv4(1, 5)
    images = torch.rand(3, 1, 28, 28)
    total, convolution = convolution_flops(lambda: model(images))
    # 3x3 convolutions, 2 FLOPs a multiply-add: 28x28x1->64, then 14, 7, 3 at 64->64
    expected = 2 * 3 * 9 * 64 * (28 * 28 * 1 + 64 * (14 * 14 + 7 * 7 + 3 * 3))
    assert convolution == expected
    assert total == expected + 2 * 3 * 64 * 5  # the linear head


def test_the_bound_arithmetic():
    bound = ConvolutionBound(flops=200e9, convolution_flops=180e9, convolution_ms=600.0,
                             profiled_ms=1500.0)
    assert bound.convolution_share == pytest.approx(0.4)
    assert bound.convolution_gflops() == pytest.approx(300.0)
    assert bound.mfu_ceiling(500.0) == pytest.approx(200 / 0.6 / 500)
    assert bound.speedup_ceiling(1.8) == pytest.approx(3.0)
    assert bound.rest_budget_ms(1.8, 2.0) == pytest.approx(300.0)
    assert bound.rest_budget_ms(1.0, 2.0) < 0
    reachable = describe_bound(bound, 500.0, 0.40, ("learn2learn", 1.8))
    assert "67%" in reachable and "3.00×" in reachable and "300 ms" in reachable
    # an MFU ceiling below the goal and a peer too fast to double
    hopeless = describe_bound(bound, 1000.0, 0.40, ("torchopt", 1.0))
    assert hopeless.count("out of reach") == 2


def test_the_profiled_convolution_time_is_found_under_this_torchs_kernel_names():
    model = Conv4(1, 5)
    images = torch.rand(16, 1, 28, 28)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        model(images).sum().backward()

    step()
    bound, operators = convolution_bound(step, top=50)
    names = {op["op"] for op in operators}
    assert {"aten::mkldnn_convolution", "aten::convolution_backward"} <= names
    assert set(CONVOLUTION_KERNELS) & names
    assert 0 < bound.convolution_ms < bound.profiled_ms
    assert bound.convolution_flops == pytest.approx(bound.flops, rel=0.01)
