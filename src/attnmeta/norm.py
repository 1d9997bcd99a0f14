"""Normalisation layers whose meta-gradients stay exact under ``torch.vmap``.

Measured on torch 2.13 (float64, second-order MAML under ``torch.vmap``): the native
batch-norm kernel gives meta-gradients off by 0.5% after 1 inner step and 15% after 5,
and the native layer-norm kernel off by ~1e-7 relative after 2 steps; the plain-op
formulas here match a hand-unrolled ``torch.autograd.grad`` reference to round-off
(``tests/learners/test_maml.py``). Outside ``vmap`` the native batch-norm kernel is exact
and faster, so :class:`BatchStatNorm2d` uses it unless the enclosing code has declared
``vmap`` (:func:`attnmeta.kernels.differentiable`).
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnmeta.kernels import native_kernels_allowed

__all__ = ["BatchStatNorm2d", "ConvNormPairs", "LayerNorm", "uses_batch_statistics", "fold_batch_norms"]


class BatchStatNorm2d(nn.Module):
    """Batch normalisation over (N, H, W) with the current batch's statistics only.

    No running statistics: every episode (support and query alike) is normalised by its
    own batch, which is what MAML does at both meta-train and meta-test time.
    """


    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        """``x`` [N, C, H, W] -> [N, C, H, W]."""
        if native_kernels_allowed():
            return F.batch_norm(x, None, None, self.weight, self.bias, training=True,
                                eps=self.eps)
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        var = (x - mean).pow(2).mean(dim=(0, 2, 3), keepdim=True)
        x_hat = (x - mean) * torch.rsqrt(var + self.eps)
        return x_hat * self.weight[:, None, None] + self.bias[:, None, None]


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` (same parameters and state dict) computed with plain ops."""

    def forward(self, x: Tensor) -> Tensor:
        dims = tuple(range(-len(self.normalized_shape), 0))
        mean = x.mean(dim=dims, keepdim=True)
        var = (x - mean).pow(2).mean(dim=dims, keepdim=True)
        x_hat = (x - mean) * torch.rsqrt(var + self.eps)
        if self.weight is not None:
            x_hat = x_hat * self.weight
        if self.bias is not None:
            x_hat = x_hat + self.bias
        return x_hat


class ConvNormPairs(nn.Module):
    """A module that declares which of its convolutions a batch norm directly follows, as
    ``(conv, norm)`` attribute-name pairs (a class constant, or set per instance where the
    layers present vary), for :func:`fold_batch_norms`: a block whose layers are attributes,
    not an ``nn.Sequential``, says so by deriving from this."""

    conv_norm_pairs: tuple[tuple[str, str], ...] = ()


def uses_batch_statistics(module: nn.Module) -> bool:
    """Whether ``module``'s output for one example depends on the other examples of its
    batch: a :class:`BatchStatNorm2d` (it normalises by the batch's statistics), or a
    torch batch norm in training mode or without running statistics."""
    for layer in module.modules():
        if isinstance(layer, BatchStatNorm2d):
            return True
        if isinstance(layer, nn.modules.batchnorm._BatchNorm) and (
                layer.training or not layer.track_running_stats):
            return True
    return False


def _foldable(conv: nn.Module, norm: nn.Module) -> bool:
    return (isinstance(conv, nn.Conv2d) and type(norm) is nn.BatchNorm2d
            and not conv.training and not norm.training and norm.track_running_stats
            and norm.running_mean is not None and conv.out_channels == norm.num_features)


def fold_batch_norms(model: nn.Module) -> int:
    """For inference only, in place: each eval-mode ``nn.BatchNorm2d`` with running
    statistics that directly follows a ``Conv2d`` is folded into that convolution
    (``torch.nn.utils.fusion.fuse_conv_bn_eval``: weight and bias rescaled) and replaced by
    ``nn.Identity``, the same function to round-off. "Directly follows": consecutive in an
    ``nn.Sequential``, or an ``(conv, norm)`` pair of attribute names a
    :class:`ConvNormPairs` module declares (:class:`attnmeta.models.resnet12.ResidualBlock`). Returns how many
    were folded. Batch-statistics norms (:class:`BatchStatNorm2d`, training mode) stay.

    Why: a batch norm at inference is a memory-bound pass over every activation; folded,
    ResNet-12's one-query forward is faster (timings:
    ``benchmarks/results/design_timings.md``; the classifier rows of
    ``benchmarks/results/paths_amd_epyc.md``)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = 0
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            for index in range(len(module) - 1):
                if _foldable(module[index], module[index + 1]):
                    module[index] = fuse_conv_bn_eval(module[index], module[index + 1])
                    module[index + 1] = nn.Identity()
                    folded += 1
        pairs = module.conv_norm_pairs if isinstance(module, ConvNormPairs) else ()
        for conv_name, norm_name in pairs:
            conv, norm = getattr(module, conv_name), getattr(module, norm_name)
            if _foldable(conv, norm):
                setattr(module, conv_name, fuse_conv_bn_eval(conv, norm))
                setattr(module, norm_name, nn.Identity())
                folded += 1
    return folded
