"""Backbones: the sinusoid MLP, Conv4, and attention models; a registry for configs."""

from typing import Callable

from torch import nn

from attnmeta.models.attentive import AttentiveNP, MemoryAttentionRegressor
from attnmeta.models.conv4 import Conv4
from attnmeta.models.mlp import MLP
from attnmeta.norm import BatchStatNorm2d

__all__ = ["AttentiveNP", "MemoryAttentionRegressor", "BatchStatNorm2d", "Conv4", "MLP",
           "BACKBONES", "register_backbone"]

# name -> factory(in_channels, out_dim, hidden, image_size, norm) for ``model.backbone``;
# out_dim = 0 asks for features (metric learners), > 0 for a classification head (MAML).
BACKBONES: dict[str, Callable[..., nn.Module]] = {"conv4": Conv4}


def register_backbone(name: str, factory: Callable[..., nn.Module]) -> None:
    """Make ``model.backbone: <name>`` in a config build ``factory(...)``."""
    BACKBONES[name] = factory
