"""Padded token batches, shared by the text encoders (:mod:`attnmeta.models.text`,
:mod:`attnmeta.models.hf`): cut the padding, mask it, pool without it.

Sentences are left-aligned token ids ``[B, L]`` padded with ``pad_id`` at the end.
"""

from __future__ import annotations

import torch
from torch import Tensor

from attnmeta import kernels

__all__ = ["trim_padding", "token_mask", "masked_mean"]


def _under_vmap(tensor: Tensor) -> bool:
    return torch._C._functorch.is_batchedtensor(tensor)


def trim_padding(token_ids: Tensor, pad_id: int) -> Tensor:
    """``token_ids [B, L]`` cut to ``[B, L']``, ``L'`` the longest sentence's length.

    Sentences are left-aligned (padding only at the end), so no token is lost. Inside
    ``torch.vmap`` (a data-dependent length cannot be batched) and while a graph is traced
    for export (it would fix the example's length) the ids come back whole.
    """
    if _under_vmap(token_ids) or token_ids.shape[-1] == 0 or kernels.exporting():
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
