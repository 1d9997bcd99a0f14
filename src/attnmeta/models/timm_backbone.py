"""Any image model of ``timm`` (PyTorch Image Models, Wightman 2019) as a backbone.

``timm.create_model(name, pretrained=False, num_classes=0, in_chans=C)``: random weights,
nothing downloaded (pretrained weights come from a local file,
:mod:`attnmeta.models.pretrained`, in timm's own key names); its pooled features are the
backbone's. Models built for one input size (vision transformers) are built for the run's
``image_size``. ``timm`` is the optional extra ``attnmeta[timm]``; it needs a torchvision
that matches the installed torch.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from attnmeta.errors import ConfigError, MissingDependencyError
from attnmeta.models.capabilities import declares
from attnmeta.models.registry import register_backbone

__all__ = ["TimmBackbone", "timm_backbone", "import_timm"]


def import_timm() -> Any:
    """The ``timm`` module, or an ``ImportError`` saying why it did not import."""
    try:
        import timm
    except Exception as error:  # absent, or present with a torchvision that does not load
        detail = " ".join(str(error).split())[:200]
        raise MissingDependencyError(f"the optional timm package did not import "
                                     f"({type(error).__name__}: {detail})") from None
    return timm


@declares("features", "pretrained_parts")
class TimmBackbone(nn.Module):
    """``[N, C, H, W]`` images -> timm's pooled features ``[N, feature_dim]`` (``out_dim=0``;
    ``feature_dim`` = the model's ``num_features``) or ``[N, out_dim]`` logits of a linear
    ``head`` on them. The timm model is ``body``."""

    def __init__(self, body: nn.Module, out_dim: int = 0) -> None:
        super().__init__()
        self.body = body
        self.feature_dim = int(body.num_features)
        self.head = nn.Linear(self.feature_dim, out_dim) if out_dim else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))

    def pretrained_parts(self) -> tuple[nn.Module, tuple[str, ...]]:
        """Pretrained files hold ``body``'s weights in timm's names; their classifier (timm's
        ``pretrained_cfg["classifier"]``, e.g. ``fc`` or ``head``) is not loaded."""
        classifier = (getattr(self.body, "pretrained_cfg", None) or {}).get("classifier") or ()
        names = (classifier,) if isinstance(classifier, str) else tuple(classifier)
        return self.body, tuple(f"{name}." for name in names)


def timm_backbone(name: str, in_channels: int, out_dim: int, image_size: int) -> TimmBackbone:
    """timm's model ``name`` with random weights for ``in_channels``-channel
    ``image_size``² images. ``ImportError`` without timm; a one-line ``ValueError`` for a
    name timm does not know or a model that cannot read such images."""
    timm = import_timm()
    if not timm.is_model(name):
        raise ConfigError("expected a timm model name such as 'resnet18' or "
                          "'vit_tiny_patch16_224' (timm.list_models() lists them)")
    try:
        body = timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_channels)
        config = getattr(body, "pretrained_cfg", None) or {}
        if config.get("fixed_input_size") and tuple(config.get("input_size", ()))[-1:] != (
                image_size,):
            # built for one size (a ViT's position embeddings): build it for this one
            body = timm.create_model(name, pretrained=False, num_classes=0,
                                     in_chans=in_channels, img_size=image_size)
        model = TimmBackbone(body, out_dim)
        # one image now rather than a traceback at the first step
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, in_channels, image_size, image_size))
        model.train(was_training)
    except Exception as error:  # timm's models raise what they like for a size they refuse
        detail = " ".join(str(error).split())[:200]
        raise ConfigError(f"timm cannot build it for {in_channels}×{image_size}×{image_size} "
                          f"images ({type(error).__name__}: {detail}): expected another "
                          "image size or timm model") from None
    return model


def _timm(model: Any, in_channels: int, out_dim: int, image_size: int) -> nn.Module:
    """``model.backbone: timm``: :func:`timm_backbone` of ``model.timm_name`` (timm is
    imported when it builds, never when it registers)."""
    try:
        return timm_backbone(model.timm_name, in_channels, out_dim, image_size)
    except ImportError as error:
        raise ConfigError(f"config key 'model.backbone' is 'timm': {error}; expected it "
                          "installed: pip install 'attnmeta[timm]'") from None
    except ValueError as error:
        raise ConfigError(f"config key 'model.timm_name' is {model.timm_name!r}: {error}"
                          ) from None


register_backbone("timm", _timm, needs_timm_name=True)
