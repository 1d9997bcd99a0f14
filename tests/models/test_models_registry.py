"""attnmeta.models.registry: what each backbone name declares."""

from __future__ import annotations

from attnmeta.models.registry import BACKBONES, TEXT_BACKBONES, UNKNOWN, backbone_entry


def test_backbone_entries_declare_what_the_config_checks_read():
    assert {"conv4", "vit", "resnet12", "timm", "efficientnet_lite0"} <= set(BACKBONES)
    assert {"wordllama", "minilm"} <= set(TEXT_BACKBONES)
    assert backbone_entry("conv4").norm_configurable and not backbone_entry("conv4").pretrained
    assert backbone_entry("vit").patch_size_divides_image
    assert backbone_entry("minilm") is TEXT_BACKBONES["minilm"] and backbone_entry("minilm").pretrained
    assert backbone_entry("nonesuch") is UNKNOWN and not UNKNOWN.pretrained
