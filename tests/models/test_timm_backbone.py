"""timm models as backbones: pooled features, a head, and pretrained weights from a file in
timm's own key names. The tests with real timm models need ``attnmeta[timm]`` (timm and a
torchvision that loads with this torch) and skip without it; the adaptor's own logic is
also checked against a stand-in ``timm`` module, so it is tested where timm is absent."""

from __future__ import annotations

import sys
import types

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from attnmeta.models.pretrained import load_pretrained
from attnmeta.models.timm_backbone import TimmBackbone, import_timm, timm_backbone


def real_timm():
    try:
        return import_timm()
    except ImportError as error:
        pytest.skip(str(error))


# ------------------------------------------------------------------- real timm models
def test_timm_resnet18_gives_512_features_and_a_head():
    real_timm()
    torch.manual_seed(0)
    backbone = timm_backbone("resnet18", 3, 0, 64)
    assert backbone.feature_dim == 512
    assert backbone(torch.rand(4, 3, 64, 64)).shape == (4, 512)
    assert timm_backbone("resnet18", 1, 5, 64)(torch.rand(2, 1, 64, 64)).shape == (2, 5)


def test_timm_vit_is_built_for_the_run_image_size():
    real_timm()
    backbone = timm_backbone("vit_tiny_patch16_224", 3, 0, 32)
    assert backbone(torch.rand(2, 3, 32, 32)).shape == (2, backbone.feature_dim)


def test_timm_weights_saved_and_loaded_give_the_same_outputs(tmp_path):
    timm = real_timm()
    torch.manual_seed(0)
    # a file as timm publishes one: the whole model, classifier ``fc`` included
    source = timm.create_model("resnet18", pretrained=False, num_classes=1000, in_chans=3).eval()
    save_file(source.state_dict(), tmp_path / "resnet18.safetensors")
    torch.save(source.state_dict(), tmp_path / "resnet18.pth")
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        expected = source.forward_head(source.forward_features(x), pre_logits=True)
    for name in ("resnet18.safetensors", "resnet18.pth"):
        torch.manual_seed(1)  # other random weights first
        backbone = load_pretrained(timm_backbone("resnet18", 3, 5, 64), tmp_path / name).eval()
        with torch.no_grad():
            assert torch.equal(backbone.body(x), expected), name


def test_unknown_timm_name_is_refused():
    real_timm()
    with pytest.raises(ValueError, match="expected a timm model name"):
        timm_backbone("resnet_nonexistent_999", 3, 0, 64)


# -------------------------------------------------------------- the adaptor's own logic
class StandInNet(nn.Module):
    """What the adaptor reads of a timm model: ``num_features``, ``pretrained_cfg`` and, with
    ``num_classes=0``, pooled features from ``forward``."""

    def __init__(self, in_chans: int, num_classes: int, img_size: int = 224) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chans, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.num_features, self.img_size = 4, img_size
        self.fc = nn.Linear(4, num_classes) if num_classes else nn.Identity()
        self.pretrained_cfg = {"classifier": "fc", "input_size": (3, 224, 224),
                               "fixed_input_size": True}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.img_size:
            raise AssertionError(f"Input width ({x.shape[-1]}) doesn't match model "
                                 f"({self.img_size}).")
        return self.fc(self.bn(self.conv(x)).mean(dim=(2, 3)))


@pytest.fixture
def stand_in_timm(monkeypatch):
    module = types.ModuleType("timm")
    module.is_model = lambda name: name.split(".")[0] == "standin"
    module.create_model = lambda name, pretrained, num_classes, in_chans, **kwargs: StandInNet(
        in_chans, num_classes, **kwargs)
    monkeypatch.setitem(sys.modules, "timm", module)
    return module


def test_adaptor_features_head_and_image_size(stand_in_timm):
    backbone = timm_backbone("standin", 3, 0, 40)
    assert isinstance(backbone, TimmBackbone) and backbone.feature_dim == 4
    assert backbone.body.img_size == 40  # a fixed-size model built for the run's size
    assert backbone(torch.rand(2, 3, 40, 40)).shape == (2, 4)
    assert timm_backbone("standin", 1, 7, 224)(torch.rand(2, 1, 224, 224)).shape == (2, 7)
    with pytest.raises(ValueError, match="expected a timm model name"):
        timm_backbone("other", 3, 0, 40)


def test_adaptor_loads_timm_keys_without_the_classifier(stand_in_timm, tmp_path):
    source = StandInNet(3, 1000).eval()
    save_file(source.state_dict(), tmp_path / "weights.safetensors")  # holds fc.* (1000-way)
    backbone = load_pretrained(timm_backbone("standin", 3, 5, 224),
                               tmp_path / "weights.safetensors").eval()
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(backbone.body(x), source.bn(source.conv(x)).mean(dim=(2, 3)))
    # weights of a grey model for an RGB one: refused, the file and the key named
    save_file(StandInNet(1, 1000).state_dict(), tmp_path / "grey.safetensors")
    with pytest.raises(ValueError, match=r"grey.safetensors does not fit.*shape differs for "
                                         r"conv.weight \(\[4, 1, 3, 3\] there, \[4, 3, 3, 3\]"):
        load_pretrained(timm_backbone("standin", 3, 5, 224), tmp_path / "grey.safetensors")


def test_missing_timm_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm raises ImportError
    with pytest.raises(ImportError, match="timm package did not import"):
        timm_backbone("resnet18", 3, 0, 64)
