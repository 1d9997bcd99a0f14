"""Scaled dot-product and multi-head attention, and a pre-norm transformer block.

The fused kernel (``torch.nn.functional.scaled_dot_product_attention``) is used whenever
the caller does not ask for the attention weights and the enclosing code has declared
neither ``vmap`` nor a double backward (:func:`attnmeta.kernels.differentiable`); the
plain formula is kept beside it because it has both, and because the weights are what a
user inspects to see *where* a meta-learner looks.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnmeta.kernels import fused_attention_allowed
from attnmeta.norm import LayerNorm

__all__ = [
    "scaled_dot_product_attention",
    "MultiHeadAttention",
    "AttentionLayer",
    "TransformerBlock",
]


def _additive_mask(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """Turn a boolean keep-mask (True = attend) into an additive float mask."""
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(
            ~mask, float("-inf")
        )
    return mask.to(dtype)


def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    dropout_p: float = 0.0,
    return_weights: bool = False,
    fused: bool = True,
) -> Tensor | tuple[Tensor, Tensor]:
    """softmax(Q Kᵀ / √d_k) V over the last two dimensions.

    Args:
        q: ``[..., L_q, d_k]`` queries; any leading batch / head dimensions.
        k: ``[..., L_k, d_k]`` keys.
        v: ``[..., L_k, d_v]`` values.
        mask: broadcastable to ``[..., L_q, L_k]``; boolean (True = keep) or an additive
            float mask (``-inf`` = drop).
        dropout_p: dropout on the attention weights (applied only if > 0).
        return_weights: also return the ``[..., L_q, L_k]`` weights that were applied.
        fused: use PyTorch's fused kernel when the weights are not requested and the
            enclosing code allows it (:func:`attnmeta.kernels.fused_attention_allowed`).

    Returns:
        ``out`` of shape ``[..., L_q, d_v]``, or ``(out, weights)``.
    """
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"query dim {q.shape[-1]} != key dim {k.shape[-1]}: expected equal d_k")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"{k.shape[-2]} keys but {v.shape[-2]} values: expected equal lengths")
    if fused and not return_weights and fused_attention_allowed():
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)

    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    empty_rows = None
    if mask is not None:
        scores = scores + _additive_mask(mask, scores.dtype)
        # A query that may attend to nothing gets zero weights and output (as the fused
        # kernel gives), not NaN: zero its scores before the softmax so gradients stay finite.
        # (== -inf rather than isneginf: the same values, and ONNX has no isneginf)
        empty_rows = (scores == float("-inf")).all(dim=-1, keepdim=True)
        scores = scores.masked_fill(empty_rows, 0.0)
    weights = torch.softmax(scores, dim=-1)
    if empty_rows is not None:
        weights = weights.masked_fill(empty_rows, 0.0)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    out = weights @ v
    return (out, weights) if return_weights else out


class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate per-head key and value widths.

    ``d_k`` (query/key width per head) and ``d_v`` (value width per head) default to
    ``d_model // n_heads``; the output projection maps ``n_heads * d_v`` back to ``d_model``.
    Batch-first: inputs are ``[B, L, d_model]``. ``key=None`` means self-attention and
    ``value=None`` means the values are the keys.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_k: int | None = None,
        d_v: int | None = None,
        dropout: float = 0.0,
        bias: bool = True,
        fused_attn: bool = True,
    ) -> None:
        super().__init__()
        if d_k is None or d_v is None:
            if d_model % n_heads:
                raise ValueError(
                    f"d_model={d_model} is not divisible by n_heads={n_heads}: "
                    "give d_k and d_v explicitly"
                )
        self.d_model, self.n_heads = d_model, n_heads
        self.d_k = d_k or d_model // n_heads
        self.d_v = d_v or d_model // n_heads
        self.dropout = dropout
        self.fused_attn = fused_attn
        self.w_q = nn.Linear(d_model, n_heads * self.d_k, bias=bias)
        self.w_k = nn.Linear(d_model, n_heads * self.d_k, bias=bias)
        self.w_v = nn.Linear(d_model, n_heads * self.d_v, bias=bias)
        self.w_o = nn.Linear(n_heads * self.d_v, d_model, bias=bias)

    def _split_heads(self, x: Tensor, width: int) -> Tensor:
        # [B, L, H*width] -> [B, H, L, width]
        return x.unflatten(-1, (self.n_heads, width)).transpose(-3, -2)

    def forward(
        self,
        query: Tensor,
        key: Tensor | None = None,
        value: Tensor | None = None,
        mask: Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from ``query`` [B, L_q, d_model] over ``key``/``value`` [B, L_k, d_model].

        ``mask`` broadcasts to ``[B, n_heads, L_q, L_k]`` (a ``[L_q, L_k]`` or
        ``[B, 1, L_q, L_k]`` mask works). Returns ``(out [B, L_q, d_model], weights)`` where
        ``weights`` is ``[B, n_heads, L_q, L_k]`` if ``need_weights`` else ``None``.
        """
        key = query if key is None else key
        value = key if value is None else value
        q = self._split_heads(self.w_q(query), self.d_k)
        k = self._split_heads(self.w_k(key), self.d_k)
        v = self._split_heads(self.w_v(value), self.d_v)
        dropout_p = self.dropout if self.training else 0.0
        result = scaled_dot_product_attention(
            q, k, v, mask=mask, dropout_p=dropout_p,
            return_weights=need_weights, fused=self.fused_attn,
        )
        out, weights = result if need_weights else (result, None)
        out = out.transpose(-3, -2).flatten(-2)  # [B, L_q, H*d_v]
        return self.w_o(out), weights


class AttentionLayer(MultiHeadAttention):
    """The seed prototype's ``AttentionLayer(d_model, d_k, d_v, n_heads)``: multi-head
    attention with its arguments in that order (kept for code written against it)."""

    def __init__(self, d_model: int, d_k: int, d_v: int, n_heads: int,
                 dropout: float = 0.0) -> None:
        super().__init__(d_model, n_heads, d_k=d_k, d_v=d_v, dropout=dropout)


class TransformerBlock(nn.Module):
    """Pre-norm transformer encoder block: x + MHA(LN(x)), then x + MLP(LN(x)).

    Pre-norm (as in GPT-2 / ViT) trains stably without warm-up, which matters for
    meta-learning where the inner loop also takes gradient steps through the block.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        d_k: int | None = None,
        d_v: int | None = None,
    ) -> None:
        super().__init__()
        self.norm_attn = LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, n_heads, d_k=d_k, d_v=d_v, dropout=dropout)
        self.norm_mlp = LayerNorm(d_model)
        hidden = int(d_model * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, hidden), nn.GELU(), nn.Linear(hidden, d_model), nn.Dropout(dropout)
        )

    def forward(
        self, x: Tensor, mask: Tensor | None = None, need_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """``x`` [B, L, d_model] -> (``[B, L, d_model]``, weights ``[B, H, L, L]`` or None)."""
        attended, weights = self.attn(self.norm_attn(x), mask=mask, need_weights=need_weights)
        x = x + attended
        x = x + self.mlp(self.norm_mlp(x))
        return x, weights
