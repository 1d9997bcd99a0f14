"""attnmeta.runs.build: config -> objects (backbones from their registry and from a local
weights file, learners, the optimiser)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from attnmeta.runs.build import build_backbone, build_learner, build_optimizer
from attnmeta.runs.config import ConfigError
from support import make_image_folder, tiny_config
from test_images_run import rgb_config


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def rgb_root(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("rgb"), size=32, channels=3)


def test_the_optimizer_is_train_optimizer_at_train_lr_over_trainable_parameters(tmp_path):
    config = tiny_config(tmp_path, "protonet")  # adam, lr 0.01
    optimizer = build_optimizer(config, nn.Linear(2, 2), weight_decay=0.1)
    assert type(optimizer) is torch.optim.Adam
    assert (optimizer.param_groups[0]["lr"], optimizer.param_groups[0]["weight_decay"]) == (
        0.01, 0.1)
    with pytest.raises(ConfigError, match=r"^learner.name='protonet' over model.backbone="
                                          r"'conv4' has no trainable parameters"):
        build_optimizer(config, nn.Linear(2, 2).requires_grad_(False))


def test_registered_backbone_is_built_from_config(data_root):
    from torch import nn

    from attnmeta.runs.build import BACKBONES, register_backbone

    def tiny(model, in_channels, out_dim, image_size):
        return nn.Sequential(nn.Flatten(),
                             nn.Linear(in_channels * image_size**2, out_dim or model.hidden))

    register_backbone("tiny-linear", tiny)
    try:
        config = tiny_config(data_root, "protonet")
        config.model.backbone = "tiny-linear"
        learner = build_learner(config)
        assert isinstance(learner.encoder[1], nn.Linear) and learner.encoder[1].out_features == 8
        config.model.backbone = "resnet999"
        with pytest.raises(ConfigError, match="'model.backbone' is 'resnet999': expected one of"):
            build_learner(config)
    finally:
        BACKBONES.pop("tiny-linear")


def test_pretrained_path_loads_a_backbone_file_strictly_but_for_the_head(tmp_path, rgb_root):
    config = rgb_config(rgb_root)
    torch.manual_seed(0)
    source = build_backbone(config, 5).eval()  # with a 5-way head, and input_norm
    x = torch.rand(4, 3, 32, 32)
    save_file(source.state_dict(), tmp_path / "resnet12.safetensors")
    torch.save({"state_dict": source.state_dict()}, tmp_path / "resnet12.pth")  # a checkpoint
    for name in ("resnet12.safetensors", "resnet12.pth"):
        config.model.pretrained_path = str(tmp_path / name)
        torch.manual_seed(1)
        loaded = build_backbone(config, 0, pretrained=True).eval()  # features, no head
        with torch.no_grad():
            assert torch.equal(loaded.features(loaded.input_norm(x)),
                               source.features(source.input_norm(x))), name
            assert torch.equal(loaded(x), source.features(source.input_norm(x)).mean((2, 3)))
    # what a checkpoint is read back with: no file needed
    config.model.pretrained_path = str(tmp_path / "gone.safetensors")
    build_learner(config)
    with pytest.raises(ConfigError, match=r"^config key 'model.pretrained_path' is '.*gone"
                                          r"\.safetensors': weights file .* does not exist"):
        build_learner(config, pretrained=True)
    # a conv4 file for a resnet12, and a file that holds no weights
    conv4 = rgb_config(rgb_root)
    conv4.model.backbone = "conv4"
    save_file(build_backbone(conv4, 0).state_dict(), tmp_path / "conv4.safetensors")
    (tmp_path / "notes.pth").write_text("not weights")
    for name, expected in (("conv4.safetensors", (r"does not fit the ResNet12 backbone: "
                                                  r"missing \['features.0.conv1.weight'")),
                           ("notes.pth", "cannot be read as a torch state dict")):
        config.model.pretrained_path = str(tmp_path / name)
        with pytest.raises(ConfigError, match=expected) as error:
            build_backbone(config, 0, pretrained=True)
        assert str(tmp_path / name) in str(error.value) and "\n" not in str(error.value)
