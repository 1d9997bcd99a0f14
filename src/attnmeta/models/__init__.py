"""Backbones with plain arguments: the sinusoid MLP, Conv4, and attention models (a config
builds them in :mod:`attnmeta.runs.build`, whose registry names them)."""

from attnmeta.models.attentive import AttentiveNP, MemoryAttentionRegressor
from attnmeta.models.conv4 import Conv4
from attnmeta.models.feature_head import FeatureHead
from attnmeta.models.mlp import MLP
from attnmeta.models.vit import SequenceTransformer, VisionTransformer
from attnmeta.norm import BatchStatNorm2d

__all__ = ["AttentiveNP", "MemoryAttentionRegressor", "BatchStatNorm2d", "Conv4", "FeatureHead",
           "MLP", "SequenceTransformer", "VisionTransformer"]
