"""Backbones: the sinusoid MLP, Conv4, and attention models."""

from attnmeta.models.attentive import AttentiveNP, MemoryAttentionRegressor
from attnmeta.models.conv4 import Conv4
from attnmeta.norm import BatchStatNorm2d
from attnmeta.models.mlp import MLP

__all__ = ["AttentiveNP", "MemoryAttentionRegressor", "BatchStatNorm2d", "Conv4", "MLP"]
