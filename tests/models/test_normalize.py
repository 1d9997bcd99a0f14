"""Input normalisation inside a model: ImageNet's numbers, and a backbone that keeps its
keys, attributes and keywords once it normalises its own input."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.func import functional_call

from attnmeta.models import ChannelNormalize, Conv4, VisionTransformer
from attnmeta.models.normalize import imagenet_normalization, normalize_inputs


def test_imagenet_statistics_rgb_and_grey():
    rgb = imagenet_normalization(3)
    x = torch.ones(1, 3, 2, 2)
    expected = torch.tensor([(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225])
    assert torch.allclose(rgb(x)[0, :, 0, 0], expected)
    assert torch.allclose(rgb(torch.tensor([0.485, 0.456, 0.406])[None, :, None, None]),
                          torch.zeros(1, 3, 1, 1), atol=1e-7)
    grey = imagenet_normalization(1)  # the channels' mean statistics: 0.449 and 0.226
    assert torch.allclose(grey(torch.full((1, 1, 1, 1), 0.449)), torch.zeros(1), atol=1e-6)
    assert torch.allclose(grey(torch.full((1, 1, 1, 1), 0.449 + 0.226)), torch.ones(1))
    with pytest.raises(ValueError, match="channels=2"):
        imagenet_normalization(2)
    with pytest.raises(ValueError, match=r"expected \[N, 3, H, W\]"):
        rgb(torch.rand(1, 1, 4, 4))
    with pytest.raises(ValueError, match="> 0"):
        ChannelNormalize([0.5], [0.0])


def test_a_normalised_backbone_keeps_its_keys_attributes_and_gradients():
    torch.manual_seed(0)
    plain = Conv4(3, 5, 4, 16)
    normalised = normalize_inputs(copy.deepcopy(plain), imagenet_normalization(3))
    x = torch.rand(4, 3, 16, 16)
    scaled = (x - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) \
        / torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    assert torch.allclose(normalised(x), plain(scaled), atol=1e-5)
    # the same keys plus the two constant buffers (head.* still names the head), the same
    # parameters, the same feature width
    assert set(normalised.state_dict()) == set(plain.state_dict()) | {"input_norm.mean",
                                                                      "input_norm.std"}
    assert [n for n, _ in normalised.named_parameters()] == \
        [n for n, _ in plain.named_parameters()]
    assert normalised.feature_dim == plain.feature_dim
    # as MAML calls it, and after a copy
    params = {n: p * 1.5 for n, p in normalised.named_parameters()}
    assert torch.allclose(functional_call(normalised, params, (x,)),
                          functional_call(plain, params, (scaled,)), atol=1e-5)
    assert torch.equal(copy.deepcopy(normalised)(x), normalised(x))
    with pytest.raises(ValueError, match="already has an input_norm"):
        normalize_inputs(normalised, imagenet_normalization(3))


def test_a_normalised_vit_still_returns_its_attention():
    model = normalize_inputs(VisionTransformer(1, 3, 8, 16, 4, 1, 2), imagenet_normalization(1))
    logits, weights = model(torch.rand(2, 1, 16, 16), need_weights=True)
    assert logits.shape == (2, 3) and model.patch_attention(weights).shape == (2, 4, 4)
