"""A transformer sentence encoder trained from scratch: token ids -> one vector per sentence.

Token + learned position embeddings, ``depth`` pre-norm blocks of
:class:`attnmeta.attention.TransformerBlock` (Vaswani et al., NeurIPS 2017; pre-norm as in
GPT-2), a final LayerNorm and a **masked mean** over the sentence's tokens. Padding never
matters: pad positions are dropped from every attention's keys (a key padding mask) and
from the mean, and a batch is first cut to its longest sentence, so adding padding changes
no output at all.

Why a mean and not a ``[CLS]`` token: intent utterances are short (CLINC150: 8 words on
average) and the encoder starts from random weights; the mean gives every token a direct
gradient path to the episode loss, and mean pooling beat ``[CLS]`` for sentence embeddings
in Reimers & Gurevych (EMNLP 2019, Sentence-BERT).

LayerNorm is the plain-op :class:`attnmeta.norm.LayerNorm` and the attention runs the
written formula wherever second-order MAML declares its double backward
(:func:`attnmeta.kernels.differentiable`), so MAML and Reptile can adapt this encoder
second order through ``torch.func``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from attnmeta.models.capabilities import declares
from attnmeta.models.registry import register_text_backbone
from attnmeta.attention import TransformerBlock
from attnmeta.models.tokens import masked_mean, token_mask, trim_padding
from attnmeta.norm import LayerNorm

__all__ = ["TextTransformer", "trim_padding", "token_mask", "masked_mean"]



@declares("features", "token_states")
class TextTransformer(nn.Module):
    """Token ids ``[B, L]`` (padded with ``pad_id`` at the end) -> sentence vectors
    ``[B, d_model]`` (``out_dim=0``, for metric learners; ``feature_dim = d_model``) or
    logits ``[B, out_dim]`` (a linear head, for MAML / Reptile).

    Args:
        vocab_size: number of token ids.
        out_dim: classes of the head; 0 returns the pooled sentence vector.
        d_model, depth, n_heads, mlp_ratio: of the transformer blocks.
        max_length: longest input accepted (size of the position table).
        pad_id: the padding id (never attended to, never pooled).
        dropout: on the embeddings and inside the blocks.
    """

    def __init__(self, vocab_size: int, out_dim: int = 0, d_model: int = 128, depth: int = 2,
                 n_heads: int = 4, max_length: int = 48, pad_id: int = 0,
                 mlp_ratio: float = 2.0, dropout: float = 0.0) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth={depth}: expected at least 1 transformer block")
        if not 0 <= pad_id < vocab_size:
            raise ValueError(f"pad_id={pad_id}: expected an id below vocab_size={vocab_size}")
        self.pad_id, self.max_length, self.vocab_size = pad_id, max_length, vocab_size
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        self.position_embedding = nn.Parameter(torch.randn(1, max_length, d_model) * 0.02)
        self.embedding_dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([TransformerBlock(d_model, n_heads, mlp_ratio, dropout)
                                     for _ in range(depth)])
        self.norm = LayerNorm(d_model)
        self.feature_dim = d_model
        self.head = nn.Linear(d_model, out_dim) if out_dim else nn.Identity()
        self._scale = math.sqrt(d_model)

    def token_states(self, token_ids: Tensor, need_weights: bool = False
                     ) -> tuple[Tensor, Tensor, list[Tensor | None]]:
        """Final (normed) token states ``[B, L', d_model]``, the token mask ``[B, L']`` and
        each block's attention ``[B, n_heads, L', L']`` (``None`` unless ``need_weights``;
        rows at padding are zero), ``L'`` the batch's longest sentence."""
        if token_ids.shape[-1] > self.max_length:
            raise ValueError(f"sentences of {token_ids.shape[-1]} tokens: expected at most "
                             f"max_length={self.max_length} (data.max_length)")
        token_ids = trim_padding(token_ids, self.pad_id)
        keep = token_mask(token_ids, self.pad_id)                    # [B, L]
        states = self.token_embedding(token_ids) * self._scale
        states = self.embedding_dropout(states + self.position_embedding[:, : token_ids.shape[-1]])
        key_mask = keep[:, None, None, :]                           # [B, 1, 1, L]
        weights = []
        for block in self.blocks:
            states, block_weights = block(states, mask=key_mask, need_weights=need_weights)
            if need_weights:
                block_weights = block_weights * keep[:, None, :, None].to(block_weights.dtype)
            weights.append(block_weights)
        return self.norm(states), keep, weights

    def forward(self, token_ids: Tensor, need_weights: bool = False
                ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """``token_ids [B, L]`` -> ``[B, out]``; with ``need_weights`` also each block's
        attention ``[B, n_heads, L', L']`` (see :meth:`token_states`)."""
        states, keep, weights = self.token_states(token_ids, need_weights)
        out = self.head(masked_mean(states, keep))
        return (out, weights) if need_weights else out


def _text_transformer(model: Any, config: Any, out_dim: int) -> nn.Module:
    data = config.data
    return TextTransformer(data.vocab_size, out_dim, model.hidden, model.depth, model.heads,
                           data.max_length, pad_id=0, dropout=model.dropout)


register_text_backbone("text_transformer", _text_transformer, heads_divide_hidden=True)
