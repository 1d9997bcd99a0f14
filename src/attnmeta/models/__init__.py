"""Backbones: the sinusoid MLP, Conv4, and attention models; a registry for configs."""

from typing import TYPE_CHECKING, Callable

from torch import nn

from attnmeta.models.attentive import AttentiveNP, MemoryAttentionRegressor
from attnmeta.models.conv4 import Conv4
from attnmeta.models.mlp import MLP
from attnmeta.models.vit import SequenceTransformer, VisionTransformer
from attnmeta.norm import BatchStatNorm2d

if TYPE_CHECKING:
    from attnmeta.runs.config import ModelConfig

__all__ = ["AttentiveNP", "MemoryAttentionRegressor", "BatchStatNorm2d", "Conv4", "MLP",
           "SequenceTransformer", "VisionTransformer", "BACKBONES", "register_backbone"]


def conv4_from_config(model: "ModelConfig", in_channels: int, out_dim: int,
                      image_size: int) -> nn.Module:
    return Conv4(in_channels, out_dim, model.hidden, image_size, model.norm)


def vit_from_config(model: "ModelConfig", in_channels: int, out_dim: int,
                    image_size: int) -> nn.Module:
    return VisionTransformer(in_channels, out_dim, model.hidden, image_size, model.patch_size,
                             model.depth, model.heads)


# name -> factory(model_config, in_channels, out_dim, image_size) for ``model.backbone``;
# out_dim = 0 asks for features (metric learners), > 0 for a classification head (MAML).
BACKBONES: dict[str, Callable[..., nn.Module]] = {"conv4": conv4_from_config,
                                                  "vit": vit_from_config}


def register_backbone(name: str, factory: Callable[..., nn.Module]) -> None:
    """Make ``model.backbone: <name>`` in a config build
    ``factory(model_config, in_channels, out_dim, image_size)``."""
    BACKBONES[name] = factory
