"""Attention models for few-shot regression.

- :class:`AttentiveNP`: an in-context learner. Query inputs attend over the encoded
  (x, y) support pairs, as in Attentive Neural Processes (Kim et al., ICLR 2019,
  deterministic path); it adapts to a task with no gradient step.
- :class:`MemoryAttentionRegressor`: a pointwise regressor whose hidden state attends over
  learned memory tokens; a small attention model for MAML's inner loop to adapt.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnmeta.attention import MultiHeadAttention, TransformerBlock
from attnmeta.norm import LayerNorm

__all__ = ["AttentiveNP", "MemoryAttentionRegressor"]


def mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.ReLU(), nn.Linear(d_hidden, d_out))


class AttentiveNP(nn.Module):
    """``forward(support_x [B, K, dx], support_y [B, K, dy], query_x [B, Q, dx]) -> [B, Q, dy]``.

    Support pairs are encoded and refined by self-attention; each query attends over them
    with keys from the support inputs (so similarity is judged in x-space) and values from
    the refined pairs; a decoder maps (query embedding, attended summary) to y.
    """

    def __init__(self, x_dim: int = 1, y_dim: int = 1, d_model: int = 64, n_heads: int = 4,
                 n_layers: int = 2) -> None:
        super().__init__()
        self.embed_x = mlp(x_dim, d_model, d_model)
        self.embed_pair = mlp(x_dim + y_dim, d_model, d_model)
        self.encoder = nn.ModuleList([TransformerBlock(d_model, n_heads) for _ in range(n_layers)])
        self.cross = MultiHeadAttention(d_model, n_heads)
        self.decoder = nn.Sequential(
            nn.Linear(2 * d_model, d_model), nn.ReLU(),
            nn.Linear(d_model, d_model), nn.ReLU(), nn.Linear(d_model, y_dim),
        )

    def forward(self, support_x: Tensor, support_y: Tensor, query_x: Tensor,
                need_weights: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        pairs = self.embed_pair(torch.cat([support_x, support_y], dim=-1))
        for block in self.encoder:
            pairs, _ = block(pairs)
        keys, queries = self.embed_x(support_x), self.embed_x(query_x)
        summary, weights = self.cross(queries, keys, pairs, need_weights=need_weights)
        prediction = self.decoder(torch.cat([queries, summary], dim=-1))
        return (prediction, weights) if need_weights else prediction


class MemoryAttentionRegressor(nn.Module):
    """``[N, in_dim] -> [N, out_dim]``: each input's embedding attends over learned tokens.

    The memory tokens act as a learned basis (attention as soft nearest-anchor lookup);
    MAML adapts them, the attention projections and the head together.
    """

    def __init__(self, in_dim: int = 1, out_dim: int = 1, d_model: int = 32, n_memory: int = 16,
                 n_heads: int = 4) -> None:
        super().__init__()
        self.embed = mlp(in_dim, d_model, d_model)
        self.memory = nn.Parameter(torch.randn(n_memory, d_model) / d_model**0.5)
        self.norm = LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, n_heads)
        self.head = mlp(d_model, d_model, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        h = self.embed(x).unsqueeze(-2)  # [N, 1, d]
        memory = self.memory.expand(*h.shape[:-2], *self.memory.shape)
        attended, _ = self.attn(self.norm(h), memory)
        return self.head((h + attended).squeeze(-2))
