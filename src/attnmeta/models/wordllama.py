"""Pretrained WordLlama token embeddings as a sentence encoder, offline.

WordLlama (Lee Miller, 2024; the MIT ``wordllama`` wheel, optional extra ``attnmeta[wordllama]``)
ships a 256-wide embedding of Llama 2's 32,000 tokens (``l2_supercat``, trained to make
mean-pooled token embeddings good sentence vectors) and the Llama 2 tokenizer, both inside the
wheel. This module reads those two files from the installed package **without importing it**
(no download is ever tried, and its import-time logging setup is not run).

The sentence vector is what ``WordLlama.embed(texts)`` returns by default: the mean of the
sentence's token embeddings over its real tokens (float32 embeddings, padding masked, no
special tokens, no normalisation). Padding never matters: a batch is cut to its longest
sentence and padding is dropped from the mean (and from every attention's keys).

On top, ``depth`` (``model.depth``) pre-norm transformer blocks of
:class:`attnmeta.attention.TransformerBlock` at the embeddings' width, with learned positions.
Their output projections and the positions start at zero, so an untrained encoder gives
exactly WordLlama's vectors and training starts from them. ``depth=0``: no layers. The
embeddings are frozen (a non-persistent buffer: checkpoints do not copy the 32 MB table, which
is read again from the wheel) unless ``tune_embeddings`` (``model.tune_embeddings``).
``normalize`` (``model.normalize``) makes the vectors unit length, as ``embed(norm=True)``:
measured here, WordLlama's vectors compare far better by angle than by distance (untrained
ProtoNets on CLINC150 5-way 1-shot, 300 episodes: 90.5% cosine, 73.2% squared distance), so
learners that use squared distances (FEAT, MAML's head) should get unit vectors.
``project`` (``model.project``) adds a learned ``256 x 256`` linear map of the (normalised)
sentence vector that starts as the identity, so training begins at WordLlama's own vectors:
what a pretrain run over the training intents adapts (``configs/text/pretrain_*.yaml``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from attnmeta.models.capabilities import declares
from attnmeta.models.registry import register_text_backbone
from attnmeta.attention import TransformerBlock
from attnmeta.models.wheel_weights import wheel_file
from attnmeta.models.tokens import masked_mean, token_mask, trim_padding

if TYPE_CHECKING:
    from attnmeta.bpe import TextTokenizer

__all__ = ["WORDLLAMA_CONFIG", "WORDLLAMA_DIM", "WORDLLAMA_PAD_TOKEN", "wordllama_files",
           "wordllama_embeddings", "wordllama_tokenizer", "WordLlamaEncoder",
           "wordllama_encoder"]

WORDLLAMA_CONFIG = "l2_supercat"   # the one model the wheel ships
WORDLLAMA_DIM = 256                # ... at this width
# WordLlama pads with id 0 (Llama's <unk>, never produced: its BPE falls back to bytes)
WORDLLAMA_PAD_TOKEN = "<unk>"


def wordllama_files() -> tuple[Path, Path]:
    """``(weights .safetensors, tokenizer .json)`` inside the installed ``wordllama`` wheel
    (a one-line :class:`~attnmeta.models.wheel_weights.MissingWeightsError` naming the
    install when it or a file is missing)."""
    what = "model.backbone='wordllama'"
    return (wheel_file("wordllama", f"weights/{WORDLLAMA_CONFIG}_{WORDLLAMA_DIM}.safetensors",
                       "wordllama", what),
            wheel_file("wordllama", f"tokenizers/{WORDLLAMA_CONFIG}_tokenizer_config.json",
                       "wordllama", what))


def wordllama_embeddings() -> Tensor:
    """The pretrained token embeddings, float32 ``[32000, 256]`` (the wheel stores float16;
    WordLlama computes in float32 too)."""
    from safetensors.torch import load_file

    weights, _ = wordllama_files()
    return load_file(str(weights))["embedding.weight"].float()


def wordllama_tokenizer() -> "TextTokenizer":
    """WordLlama's own (Llama 2) tokenizer, padding with id 0 and adding no ``<s>``: the ids
    ``WordLlama.embed`` pools (it encodes with ``add_special_tokens=False``)."""
    from tokenizers import Tokenizer

    from attnmeta.bpe import TextTokenizer

    _, path = wordllama_files()
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.post_processor = None   # no special tokens, as in WordLlama.embed
    return TextTokenizer(tokenizer, WORDLLAMA_PAD_TOKEN)


@declares("features", "token_states")
class WordLlamaEncoder(nn.Module):
    """Token ids ``[B, L]`` (WordLlama's tokenizer, padded with ``pad_id`` at the end) ->
    sentence vectors ``[B, 256]`` (``out_dim=0``; ``feature_dim = 256``) or logits
    ``[B, out_dim]`` (a linear head, for MAML / Reptile).

    Args:
        embeddings: ``[vocab, dim]`` token embeddings (:func:`wordllama_embeddings`).
        out_dim: classes of the head; 0 returns the pooled sentence vector.
        depth: transformer blocks on top (0: the plain WordLlama mean).
        n_heads, mlp_ratio, dropout: of those blocks.
        max_length: longest input accepted when ``depth > 0`` (size of the position table).
        pad_id: the padding id (never attended to, never pooled).
        tune_embeddings: train the embeddings too (else a frozen, unsaved buffer).
        normalize: divide each sentence vector by its length (before the head).
        project: a linear map of the sentence vector, started at the identity (after
            ``normalize``, before the head).
    """

    def __init__(self, embeddings: Tensor, out_dim: int = 0, depth: int = 0, n_heads: int = 4,
                 max_length: int = 48, pad_id: int = 0, mlp_ratio: float = 2.0,
                 dropout: float = 0.0, tune_embeddings: bool = False,
                 normalize: bool = False, project: bool = False) -> None:
        super().__init__()
        if embeddings.dim() != 2:
            raise ValueError(f"embeddings of shape {tuple(embeddings.shape)}: expected "
                             "[vocab, dim]")
        vocab_size, dim = embeddings.shape
        if depth < 0:
            raise ValueError(f"depth={depth}: expected 0 (no layers) or more blocks")
        if not 0 <= pad_id < vocab_size:
            raise ValueError(f"pad_id={pad_id}: expected an id below the {vocab_size} embeddings")
        if depth and dim % n_heads:
            raise ValueError(f"n_heads={n_heads}: expected a divisor of the embedding width "
                             f"{dim} (model.heads)")
        self.pad_id, self.max_length, self.vocab_size = pad_id, max_length, vocab_size
        self.feature_dim, self.tune_embeddings, self.normalize = dim, tune_embeddings, normalize
        embeddings = embeddings.detach().float().clone()
        if tune_embeddings:
            self.embedding = nn.Parameter(embeddings)
        else:
            self.register_buffer("embedding", embeddings, persistent=False)
        self.blocks = nn.ModuleList([TransformerBlock(dim, n_heads, mlp_ratio, dropout)
                                     for _ in range(depth)])
        for block in self.blocks:  # each block starts as the identity
            for last in (block.attn.w_o, block.mlp[2]):
                nn.init.zeros_(last.weight)
                nn.init.zeros_(last.bias)
        if depth:
            self.position_embedding = nn.Parameter(torch.zeros(1, max_length, dim))
        self.projection = nn.Linear(dim, dim) if project else nn.Identity()
        if project:  # the identity: an untrained encoder still gives WordLlama's vectors
            nn.init.eye_(self.projection.weight)
            nn.init.zeros_(self.projection.bias)
        self.head = nn.Linear(dim, out_dim) if out_dim else nn.Identity()

    def token_states(self, token_ids: Tensor, need_weights: bool = False
                     ) -> tuple[Tensor, Tensor, list[Tensor | None]]:
        """Token states ``[B, L', 256]``, the token mask ``[B, L']`` and each block's
        attention ``[B, n_heads, L', L']`` (``None`` unless ``need_weights``; rows at padding
        are zero; no entry when ``depth=0``), ``L'`` the batch's longest sentence."""
        if self.blocks and token_ids.shape[-1] > self.max_length:
            raise ValueError(f"sentences of {token_ids.shape[-1]} tokens: expected at most "
                             f"max_length={self.max_length} (data.max_length)")
        token_ids = trim_padding(token_ids, self.pad_id)
        keep = token_mask(token_ids, self.pad_id)
        # WordLlama clamps ids into its table; ours come from its tokenizer, so are in range
        states = self.embedding[token_ids.clamp(0, self.vocab_size - 1)]
        weights: list[Tensor | None] = []
        if self.blocks:
            states = states + self.position_embedding[:, : token_ids.shape[-1]]
            key_mask = keep[:, None, None, :]
            for block in self.blocks:
                states, block_weights = block(states, mask=key_mask, need_weights=need_weights)
                if need_weights:
                    block_weights = block_weights * keep[:, None, :, None].to(block_weights.dtype)
                weights.append(block_weights)
        return states, keep, weights

    def forward(self, token_ids: Tensor, need_weights: bool = False
                ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """``token_ids [B, L]`` -> ``[B, out]``; with ``need_weights`` also each block's
        attention (see :meth:`token_states`)."""
        states, keep, weights = self.token_states(token_ids, need_weights)
        pooled = masked_mean(states, keep)
        if self.normalize:  # as WordLlama: v / |v|
            pooled = pooled / torch.linalg.vector_norm(pooled, dim=-1, keepdim=True)
        out = self.head(self.projection(pooled))
        return (out, weights) if need_weights else out


def wordllama_encoder(out_dim: int = 0, depth: int = 0, n_heads: int = 4, max_length: int = 48,
                      dropout: float = 0.0, tune_embeddings: bool = False,
                      normalize: bool = False, project: bool = False) -> WordLlamaEncoder:
    """:class:`WordLlamaEncoder` over the installed wheel's embeddings (padding id 0, that of
    :func:`wordllama_tokenizer`)."""
    pad_id = 0
    return WordLlamaEncoder(wordllama_embeddings(), out_dim, depth, n_heads, max_length,
                            pad_id=pad_id, dropout=dropout, tune_embeddings=tune_embeddings,
                            normalize=normalize, project=project)


def _wordllama(model: Any, config: Any, out_dim: int) -> nn.Module:
    return wordllama_encoder(out_dim, model.depth, model.heads, config.data.max_length,
                             model.dropout, model.tune_embeddings, model.normalize,
                             model.project)


# data.vocab_size is not read: its tokenizer has 32,000 ids
register_text_backbone("wordllama", _wordllama, pretrained=True, width=WORDLLAMA_DIM,
                       depth_optional=True, maps_sentences=True, wheel_tokenizer=True,
                       tokenizer=lambda config: wordllama_tokenizer())
