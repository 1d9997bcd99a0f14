"""Episodes: the unit of meta-learning (a support set to adapt on, a query set to score)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Sequence

import torch
from torch import Tensor

__all__ = ["Episode", "collate_episodes"]


@dataclass
class Episode:
    """One task, or a batch of tasks when every tensor has a leading task dimension ``T``.

    Shapes for a single N-way K-shot Q-query classification episode:
    ``support_x [N*K, *x_shape]``, ``support_y [N*K]``, ``query_x [N*Q, *x_shape]``,
    ``query_y [N*Q]``; a batch prepends ``T``. Labels are remapped to ``0..N-1``.
    """

    support_x: Tensor
    support_y: Tensor
    query_x: Tensor
    query_y: Tensor

    def to(self, device: torch.device | str) -> "Episode":
        return Episode(*(getattr(self, f.name).to(device) for f in fields(self)))

    @property
    def num_tasks(self) -> int:
        """Size of the leading task dimension (only meaningful for a batch)."""
        return self.support_y.shape[0]

    def __len__(self) -> int:
        """The units the training loop splits a batch into: its tasks (:attr:`num_tasks`)."""
        return self.num_tasks

    def task(self, index: int) -> "Episode":
        """The ``index``-th episode of a batch."""
        return Episode(*(getattr(self, f.name)[index] for f in fields(self)))

    def slice(self, start: int, stop: int) -> "Episode":
        """Tasks ``start .. stop-1`` of a batch, still a batch."""
        return Episode(*(getattr(self, f.name)[start:stop] for f in fields(self)))

    def split(self, chunks: int) -> list["Episode"]:
        """Split a batch along the task dimension into ``chunks`` near-equal parts."""
        parts = [torch.tensor_split(getattr(self, f.name), chunks) for f in fields(self)]
        return [Episode(*p) for p in zip(*parts)]


def collate_episodes(episodes: Sequence[Episode]) -> Episode:
    """Stack episodes into a batch with a leading task dimension (a DataLoader collate_fn)."""
    return Episode(*(torch.stack([getattr(e, f.name) for e in episodes]) for f in fields(Episode)))
