"""N-way K-shot episodes over any labelled data set.

Episode ``i`` is drawn from a generator seeded by ``(seed, i)``, so an episode is the same
whichever DataLoader worker builds it, and a resumed run sees exactly the episodes the
killed run would have seen next.

With ``class_groups`` (e.g. each Omniglot character's alphabet) every episode's classes
come from one group: episode ``i`` first picks a group uniformly among those with at least
``n_way`` classes, then ``n_way`` classes within it (Lake et al. 2015's within-alphabet
one-shot classification), still from the generator of ``(seed, i)`` alone.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Hashable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from attnmeta.errors import ConfigError
from attnmeta.tasks.episode import Episode

__all__ = ["FewShotEpisodes"]


def _episode_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, index])


def _eligible_groups(classes: list[Hashable],
                     class_groups: Mapping[Hashable, Hashable] | Sequence[Hashable],
                     n_way: int) -> list[np.ndarray]:
    """Class positions of each group with at least ``n_way`` classes, in order of first
    appearance; a one-line ``ValueError`` when no group is that large."""
    members: dict[Hashable, list[int]] = defaultdict(list)
    for position, label in enumerate(classes):
        members[class_groups[label]].append(position)
    eligible = [np.asarray(m) for m in members.values() if len(m) >= n_way]
    if not eligible:
        largest = max((len(m) for m in members.values()), default=0)
        raise ConfigError(f"n_way={n_way} exceeds the {largest} classes of the largest of the "
                          f"{len(members)} class groups: expected n_way <= {largest}")
    return eligible


class FewShotEpisodes(Dataset):
    """A map-style data set of ``num_episodes`` seeded N-way K-shot Q-query episodes.

    Args:
        items: indexable examples. Either the inputs themselves (a tensor / array / list whose
            ``items[i]`` is example ``i``, with ``labels`` given), or ``(x, y)`` pairs as a
            torch ``Dataset`` returns them (then ``labels`` may be omitted).
        labels: the class of each item (any hashable); read from ``items[i][1]`` if None.
        n_way, k_shot, q_query: classes per episode, support and query examples per class.
        num_episodes: length of the data set (episodes are generated, not stored).
        seed: base seed; episode ``i`` depends only on ``(seed, i)``.
        transform: optional function applied to each input before stacking.
        class_groups: optional group of each class, indexed by label (a mapping, or a
            sequence for labels ``0..C-1``); then each episode's classes share one group.

    ``dataset[i]`` is an :class:`Episode` with labels remapped to ``0..n_way-1``, support
    and query ordered class by class. Use :func:`collate_episodes` to batch them.
    """

    def __init__(
        self,
        items: Sequence[Any] | Tensor | np.ndarray,
        labels: Sequence[Hashable] | None = None,
        n_way: int = 5,
        k_shot: int = 1,
        q_query: int = 15,
        num_episodes: int = 1000,
        seed: int = 0,
        transform: Callable[[Any], Any] | None = None,
        class_groups: Mapping[Hashable, Hashable] | Sequence[Hashable] | None = None,
    ) -> None:
        for name, value, low in (("n_way", n_way, 1), ("k_shot", k_shot, 1),
                                 ("q_query", q_query, 0), ("num_episodes", num_episodes, 0)):
            if int(value) != value or value < low:
                raise ConfigError(f"{name}={value!r}: expected an integer >= {low}")
        if labels is None:
            labels = [items[i][1] for i in range(len(items))]
            self._paired = True
        else:
            self._paired = False
            if len(labels) != len(items):
                raise ValueError(f"{len(labels)} labels for {len(items)} items: expected one each")
        by_class: dict[Hashable, list[int]] = defaultdict(list)
        for index, label in enumerate(labels):
            by_class[label.item() if isinstance(label, Tensor) else label].append(index)
        if n_way > len(by_class):
            raise ConfigError(
                f"n_way={n_way} exceeds the {len(by_class)} classes available in the data"
            )
        needed = k_shot + q_query
        for label, indices in by_class.items():
            if len(indices) < needed:
                raise ConfigError(
                    f"k_shot + q_query = {k_shot} + {q_query} = {needed} exceeds the "
                    f"{len(indices)} examples of class {label!r}"
                )
        self.items = items
        self.classes = list(by_class)
        self.class_indices = [np.asarray(by_class[c]) for c in self.classes]
        self.groups = None if class_groups is None \
            else _eligible_groups(self.classes, class_groups, n_way)
        self.n_way, self.k_shot, self.q_query = n_way, k_shot, q_query
        self.num_episodes, self.seed, self.transform = num_episodes, seed, transform

    def __len__(self) -> int:
        return self.num_episodes

    def episode_indices(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Item indices ``[n_way, k_shot]`` (support) and ``[n_way, q_query]`` (query)."""
        rng = _episode_rng(self.seed, index)
        if self.groups is None:
            chosen = rng.choice(len(self.classes), size=self.n_way, replace=False)
        else:
            group = self.groups[rng.integers(len(self.groups))]
            chosen = rng.choice(group, size=self.n_way, replace=False)
        picks = np.stack([
            rng.choice(self.class_indices[c], size=self.k_shot + self.q_query, replace=False)
            for c in chosen
        ])
        return picks[:, : self.k_shot], picks[:, self.k_shot:]

    def _load(self, flat_indices: np.ndarray) -> Tensor:
        xs = []
        for i in flat_indices.tolist():
            x = self.items[i][0] if self._paired else self.items[i]
            if self.transform is not None:
                x = self.transform(x)
            xs.append(torch.as_tensor(x))
        return torch.stack(xs)

    def __getitem__(self, index: int) -> Episode:
        if not 0 <= index < self.num_episodes:
            raise IndexError(f"episode {index} out of range [0, {self.num_episodes})")
        support, query = self.episode_indices(index)
        labels = torch.arange(self.n_way)
        # one stack for both sets: q_query may be 0, and torch.stack([]) fails
        xs = self._load(np.concatenate([support.reshape(-1), query.reshape(-1)]))
        return Episode(
            support_x=xs[: support.size],
            support_y=labels.repeat_interleave(self.k_shot),
            query_x=xs[support.size:],
            query_y=labels.repeat_interleave(self.q_query),
        )
