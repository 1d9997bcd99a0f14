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

LayerNorm is the plain-op :class:`attnmeta.norm.LayerNorm` and the attention falls back to
the written formula when MAML asks (no fused kernel under double backward), so MAML and
Reptile can adapt this encoder second order through ``torch.func``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from attnmeta.attention import TransformerBlock
from attnmeta.norm import LayerNorm

if TYPE_CHECKING:
    from attnmeta.runs.config import DataConfig, ModelConfig

__all__ = ["TextTransformer", "trim_padding", "token_mask", "masked_mean", "TEXT_BACKBONES",
           "text_encoder_from_config"]

TEXT_BACKBONES: tuple[str, ...] = ("text_transformer", "hf")


def _under_vmap(tensor: Tensor) -> bool:
    return torch._C._functorch.is_batchedtensor(tensor)


def trim_padding(token_ids: Tensor, pad_id: int) -> Tensor:
    """``token_ids [B, L]`` cut to ``[B, L']``, ``L'`` the longest sentence's length.

    Sentences are left-aligned (padding only at the end), so no token is lost. Inside
    ``torch.vmap`` (a data-dependent length cannot be batched) the ids come back whole.
    """
    if _under_vmap(token_ids) or token_ids.shape[-1] == 0:
        return token_ids
    used = (token_ids != pad_id).any(dim=0).nonzero()
    length = int(used.max()) + 1 if used.numel() else 1
    return token_ids[..., :length]


def token_mask(token_ids: Tensor, pad_id: int) -> Tensor:
    """Boolean ``[B, L]``, True at real tokens. A sentence with no token keeps position 0,
    so no attention row is empty and its pooled vector is that position's output."""
    mask = token_ids != pad_id
    first = torch.zeros_like(mask)
    first[..., 0] = True
    return mask | (first & ~mask.any(dim=-1, keepdim=True))


def masked_mean(states: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``states [B, L, D]`` over the positions where ``mask [B, L]`` is True."""
    weights = mask.to(states.dtype).unsqueeze(-1)
    return (states * weights).sum(dim=-2) / weights.sum(dim=-2).clamp_min(1.0)


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


def text_encoder_from_config(model: "ModelConfig", data: "DataConfig", out_dim: int
                             ) -> nn.Module:
    """The text encoder named by ``model.backbone``: ``text_transformer`` (this module) or
    ``hf`` (:mod:`attnmeta.models.hf`), with ``data.vocab_size`` ids and
    ``data.max_length`` positions."""
    if model.backbone == "text_transformer":
        return TextTransformer(data.vocab_size, out_dim, model.hidden, model.depth, model.heads,
                               data.max_length, pad_id=0, dropout=model.dropout)
    if model.backbone == "hf":
        from attnmeta.models.hf import hf_encoder_from_config

        return hf_encoder_from_config(model, data, out_dim)
    raise ValueError(f"model.backbone={model.backbone!r} cannot read text: expected one of "
                     f"{', '.join(TEXT_BACKBONES)} for data.dataset={data.dataset!r}")
