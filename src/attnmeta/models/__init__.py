"""Backbones with plain arguments: the sinusoid MLP, Conv4, ResNet-12, and attention models
(a config builds them in :mod:`attnmeta.runs.build`, whose registry names them); timm's
models (the optional extra) are in :mod:`attnmeta.models.timm_backbone`."""

from attnmeta.models.attentive import AttentiveNP, MemoryAttentionRegressor
from attnmeta.models.conv4 import Conv4
from attnmeta.models.feature_head import FeatureHead
from attnmeta.models.mlp import MLP
from attnmeta.models.normalize import ChannelNormalize
from attnmeta.models.resnet12 import ResNet12
from attnmeta.models.vit import SequenceTransformer, VisionTransformer
from attnmeta.norm import BatchStatNorm2d

__all__ = ["AttentiveNP", "MemoryAttentionRegressor", "BatchStatNorm2d", "ChannelNormalize",
           "Conv4", "FeatureHead", "MLP", "ResNet12", "SequenceTransformer", "VisionTransformer"]
