"""Per-channel input normalisation inside the model: ``(x - mean) / std`` with fixed buffers.

Inputs stay images in [0, 1] everywhere (data sets, augmentation, the few-shot API); a
backbone built for ImageNet-style inputs starts with :class:`ChannelNormalize`, so a saved
or exported model holds its own preprocessing. :func:`normalize_inputs` adds it to any
backbone as a child ``input_norm`` run by a forward pre-hook rather than a wrapper, so the
backbone keeps its state-dict keys (``head.*``, which MAML's ``adapt_only`` and encoder
loading name), its attributes (``feature_dim``, ``patch_attention``) and its forward's
keywords (``need_weights``).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "ChannelNormalize", "imagenet_normalization",
           "normalize_inputs"]

# The ImageNet training set's per-channel statistics (RGB), as torchvision and timm use them.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ChannelNormalize(nn.Module):
    """``[N, C, H, W]`` -> ``(x - mean[c]) / std[c]``, same shape; ``mean`` and ``std`` are
    buffers (saved with the model, never trained)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std) or not mean:
            raise ValueError(f"{len(mean)} means and {len(std)} standard deviations: expected "
                             "one of each per channel")
        if min(std) <= 0:
            raise ValueError(f"std={tuple(std)}: expected every standard deviation > 0")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32)[None, :, None, None])
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32)[None, :, None, None])

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.mean.shape[1]:
            raise ValueError(f"input of shape {list(x.shape)}: expected [N, "
                             f"{self.mean.shape[1]}, H, W] images")
        return (x - self.mean) / self.std


def imagenet_normalization(channels: int) -> ChannelNormalize:
    """ImageNet's statistics for ``channels`` 3 (RGB) or 1 (grey: the mean of the three
    channels' means, and of their standard deviations)."""
    if channels == 3:
        return ChannelNormalize(IMAGENET_MEAN, IMAGENET_STD)
    if channels == 1:
        return ChannelNormalize([sum(IMAGENET_MEAN) / 3], [sum(IMAGENET_STD) / 3])
    raise ValueError(f"channels={channels}: expected 1 (grey) or 3 (RGB) for ImageNet statistics")


def _normalize_first(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Forward pre-hook: the first positional input through ``module.input_norm``."""
    return (module.input_norm(args[0]), *args[1:])


def normalize_inputs(model: nn.Module, normalization: nn.Module) -> nn.Module:
    """``model`` itself, now normalising its image input ``[N, C, H, W]`` with
    ``normalization`` (held as ``model.input_norm``) before its own forward."""
    if "input_norm" in dict(model.named_children()):  # normalised twice would be wrong
        raise ValueError(f"{type(model).__name__} already has an input_norm: expected a model "
                         "without input normalisation")
    model.input_norm = normalization
    # a module-level function, not a closure: the hook survives copy.deepcopy and pickling
    model.register_forward_pre_hook(_normalize_first)
    return model
