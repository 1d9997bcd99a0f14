"""Backbones with plain arguments: the sinusoid MLP, Conv4, ResNet-12, and attention models
(a config builds them in :mod:`attnmeta.runs.build` from :mod:`attnmeta.models.registry`);
timm's models (the optional extra) are in :mod:`attnmeta.models.timm_backbone`.

Each backbone's model file ends with the line registering it
(:func:`~attnmeta.models.registry.register_backbone`); importing the built-in ones here, in
the order their names are listed, is what fills the registry whenever it is read. None of
them imports an optional package when imported."""

# the built-in backbones (each registers itself): images, then text
from attnmeta.models import conv4, vit, resnet12, timm_backbone, efficientnet_lite  # noqa: F401
from attnmeta.models import text, hf, wordllama, minilm  # noqa: F401
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
