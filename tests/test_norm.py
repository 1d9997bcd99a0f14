"""attnmeta.norm.fold_batch_norms: an inference copy's folded convolutions compute what the
convolution and its running-statistics batch norm computed, and nothing else is folded."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from attnmeta.models import Conv4
from attnmeta.models.resnet12 import ResNet12
from attnmeta.norm import fold_batch_norms


def with_statistics(model: nn.Module) -> nn.Module:
    """Random running statistics and affine weights, so a fold that skips a term shows."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
            module.weight.data.normal_(generator=generator)
            module.bias.data.normal_(generator=generator)
    return model.double().eval()


@pytest.mark.parametrize("make,shape,count", [
    (lambda: Conv4(1, 0, 8, 28, "running"), (3, 1, 28, 28), 4),
    # per block: three conv-norm pairs it declares and the shortcut's Sequential
    (lambda: ResNet12(3, 0, 8, "running"), (2, 3, 32, 32), 16),
])
def test_folded_network_computes_the_same_function(make, shape, count):
    model = with_statistics(make())
    x = torch.rand(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x)
        folded = copy.deepcopy(model)
        assert fold_batch_norms(folded) == count
        assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
        assert torch.allclose(folded(x), expected, rtol=1e-10, atol=1e-12)


def test_batch_statistics_and_training_mode_norms_are_not_folded():
    batch = Conv4(1, 0, 8, 28, "batch").eval()      # BatchStatNorm2d: each batch's statistics
    assert fold_batch_norms(batch) == 0
    training = Conv4(1, 0, 8, 28, "running").train()  # batch statistics while training
    assert fold_batch_norms(training) == 0
    assert sum(isinstance(m, nn.BatchNorm2d) for m in training.modules()) == 4
