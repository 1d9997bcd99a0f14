"""ResNet-12 (MetaOptNet / RFS): its shapes from 28 to 224 pixels, its exact size, its two
normalisations, and gradients that agree with finite differences."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attnmeta.models import ResNet12
from attnmeta.models.resnet12 import resnet12_widths
from attnmeta.norm import BatchStatNorm2d


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_standard_widths_and_exact_parameter_count():
    # Per block (c_in -> c): three 3x3 convs without bias, 9*c_in*c + 2 * 9*c*c; a 1x1
    # shortcut conv, c_in*c; four batch norms (three in the block, one on the shortcut),
    # 2*c each.
    #   3 -> 64:      1,728 +    73,728 +   192 +   512 =    76,160
    #   64 -> 160:   92,160 +   460,800 + 10,240 + 1,280 =   564,480
    #   160 -> 320: 460,800 + 1,843,200 + 51,200 + 2,560 = 2,357,760
    #   320 -> 640: 1,843,200 + 7,372,800 + 204,800 + 5,120 = 9,425,920
    # total 12,424,320 (the "12.4M" of the few-shot papers); no head with out_dim=0.
    assert resnet12_widths(64) == (64, 160, 320, 640)
    assert parameter_count(ResNet12(3, 0, 64)) == 12_424_320
    assert parameter_count(ResNet12(3, 0, 64, norm="running")) == 12_424_320
    # a head of 5 outputs adds 640 * 5 weights and 5 biases
    assert parameter_count(ResNet12(3, 5, 64)) == 12_424_320 + 640 * 5 + 5


@pytest.mark.parametrize("side", [28, 84, 224])
def test_shapes_at_every_image_size(side):
    features = ResNet12(in_channels=3, out_dim=0, hidden=4)
    logits = ResNet12(in_channels=1, out_dim=5, hidden=4)
    assert features.feature_dim == 40
    assert features(torch.rand(2, 3, side, side)).shape == (2, 40)
    assert logits(torch.rand(3, 1, side, side)).shape == (3, 5)
    assert isinstance(logits.head, nn.Linear) and isinstance(features.head, nn.Identity)


def test_norm_picks_batch_statistics_or_running_statistics():
    batch, running = ResNet12(3, 0, 2, norm="batch"), ResNet12(3, 0, 2, norm="running")
    assert {type(m) for m in batch.modules()} >= {BatchStatNorm2d}
    assert not any(isinstance(m, nn.BatchNorm2d) for m in batch.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in running.modules()) == 16
    # batch statistics: an image's features depend on the rest of its batch, even in eval
    batch.eval()
    x = torch.rand(4, 3, 16, 16)
    assert not torch.allclose(batch(x)[:1], batch(x[:1]))
    running.eval()  # running statistics: they do not
    assert torch.allclose(running(x)[:1], running(x[:1]), atol=1e-6)
    with pytest.raises(ValueError, match="norm='layer'"):
        ResNet12(3, 0, 2, norm="layer")


def test_gradients_match_finite_differences():
    torch.manual_seed(0)
    model = ResNet12(in_channels=1, out_dim=2, hidden=2, norm="batch").double()
    x = torch.rand(3, 1, 16, 16, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda images: model(images), (x,), eps=1e-6, atol=1e-5)
