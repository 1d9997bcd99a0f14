"""Any Hugging Face ``transformers`` encoder (``AutoModel``) as a sentence encoder.

``model.backbone: hf`` with ``model.hf_path: /local/model/folder`` loads pretrained weights
from disk (``local_files_only``: nothing is downloaded) and the folder's own tokenizer; with
no ``hf_path`` a small randomly initialised BERT (Devlin et al., NAACL 2019) is built from
``model.hidden / depth / heads`` and trained from scratch with the run's BPE tokenizer,
which is how the offline tests exercise this path. ``transformers`` is the optional extra
``attnmeta[hf]``.

The sentence vector is the masked mean of the last hidden states (as for
:class:`attnmeta.models.text.TextTransformer`); eager attention is requested so that MAML's
double backward works and the attention weights can be drawn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from attnmeta.errors import ConfigError, MissingDependencyError
from attnmeta.models.capabilities import declares
from attnmeta.models.registry import register_text_backbone
from attnmeta.models.tokens import masked_mean, token_mask, trim_padding

if TYPE_CHECKING:
    from attnmeta.bpe import TextTokenizer

__all__ = ["HFTextEncoder", "tiny_bert", "hf_text_encoder"]


def _transformers():
    try:
        import transformers
    except ImportError:
        raise MissingDependencyError("model.backbone='hf' needs the optional `transformers` "
                                     "package: pip install 'attnmeta[hf]'") from None
    return transformers


@declares("features", "token_states")
class HFTextEncoder(nn.Module):
    """Wrap a ``transformers`` encoder: token ids ``[B, L]`` -> masked mean of its last
    hidden states ``[B, hidden_size]`` (``out_dim=0``) or logits ``[B, out_dim]``."""

    def __init__(self, model: nn.Module, pad_id: int, out_dim: int = 0) -> None:
        super().__init__()
        self.model, self.pad_id = model, pad_id
        self.feature_dim = model.config.hidden_size
        self.max_length = model.config.max_position_embeddings
        self.head = nn.Linear(self.feature_dim, out_dim) if out_dim else nn.Identity()

    def token_states(self, token_ids: Tensor, need_weights: bool = False
                     ) -> tuple[Tensor, Tensor, list[Tensor | None]]:
        """Last hidden states ``[B, L', hidden]``, the token mask ``[B, L']`` and each
        layer's attention ``[B, heads, L', L']`` (``None`` unless ``need_weights``), ``L'``
        the batch's longest sentence."""
        token_ids = trim_padding(token_ids, self.pad_id)
        keep = token_mask(token_ids, self.pad_id)
        outputs = self.model(input_ids=token_ids, attention_mask=keep.long(),
                             output_attentions=need_weights)
        weights = list(outputs.attentions) if need_weights else [None]
        return outputs.last_hidden_state, keep, weights

    def forward(self, token_ids: Tensor, need_weights: bool = False
                ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """``token_ids [B, L]`` -> ``[B, out]``; with ``need_weights`` also each layer's
        attention (see :meth:`token_states`)."""
        states, keep, weights = self.token_states(token_ids, need_weights)
        out = self.head(masked_mean(states, keep))
        return (out, weights) if need_weights else out


def tiny_bert(vocab_size: int, hidden: int, depth: int, heads: int, max_length: int,
              pad_id: int = 0, dropout: float = 0.0) -> nn.Module:
    """A randomly initialised ``BertModel`` (``AutoModel.from_config``; no download)."""
    transformers = _transformers()
    config = transformers.BertConfig(
        vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=depth,
        num_attention_heads=heads, intermediate_size=2 * hidden,
        max_position_embeddings=max_length, pad_token_id=pad_id,
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    config._attn_implementation = "eager"
    return transformers.AutoModel.from_config(config, attn_implementation="eager",
                                              add_pooling_layer=False)


def hf_text_encoder(vocab_size: int, max_length: int, out_dim: int = 0,
                    hf_path: str | None = None, hidden: int = 128, depth: int = 2,
                    heads: int = 4, dropout: float = 0.0) -> HFTextEncoder:
    """``hf_path`` set (``model.hf_path``): that local pretrained model with its tokenizer's
    padding id, refused if it has fewer than ``max_length`` (``data.max_length``) positions;
    unset: :func:`tiny_bert` of ``vocab_size`` ids sized by ``hidden / depth / heads``,
    padding id 0 (the run's BPE tokenizer)."""
    if hf_path:
        from attnmeta.bpe import tokenizer_from_pretrained

        tokenizer = tokenizer_from_pretrained(hf_path)  # also checks the folder exists
        transformers = _transformers()
        try:
            encoder = transformers.AutoModel.from_pretrained(
                hf_path, local_files_only=True, attn_implementation="eager")
        except OSError as error:
            raise ConfigError(f"model.hf_path={hf_path!r}: cannot load a model from it "
                              f"({str(error).splitlines()[0]})") from None
        if max_length > encoder.config.max_position_embeddings:
            raise ConfigError(f"data.max_length={max_length} exceeds the "
                              f"{encoder.config.max_position_embeddings} positions of "
                              f"{hf_path}: expected at most that")
        return HFTextEncoder(encoder, tokenizer.pad_id, out_dim)
    return HFTextEncoder(tiny_bert(vocab_size, hidden, depth, heads, max_length, pad_id=0,
                                   dropout=dropout),
                         pad_id=0, out_dim=out_dim)


def _hf(model: Any, config: Any, out_dim: int) -> nn.Module:
    return hf_text_encoder(config.data.vocab_size, config.data.max_length, out_dim,
                           model.hf_path, model.hidden, model.depth, model.heads, model.dropout)


def _hf_tokenizer(config: Any) -> "TextTokenizer | None":
    from attnmeta.bpe import tokenizer_from_pretrained

    # a local pretrained model's own; without one (a tiny BERT), BPE on the data
    return tokenizer_from_pretrained(config.model.hf_path) if config.model.hf_path else None


register_text_backbone("hf", _hf, tokenizer=_hf_tokenizer)
