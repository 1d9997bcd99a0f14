"""What every labelled data set split offers, and the check that an episode shape fits one.

A split is examples ``items [N, ...]`` (images ``[N, C, H, W]`` float32, or token ids
``[N, L]`` int64), int64 ``labels [N]`` in ``0..C-1`` and ``class_names [C]``. The image
(:class:`attnmeta.tasks.LabelledImages`, :class:`attnmeta.tasks.omniglot.OmniglotSplit`) and
text (:class:`attnmeta.tasks.text.LabelledTokens`) splits all satisfy :class:`LabelledSplit`,
so the N-way K-shot sampler and :func:`check_episode_shape` take any of them. A split that
also has ``class_alphabets [C]`` (Omniglot) can give within-alphabet episodes
(:func:`class_groups`).
"""

from __future__ import annotations

import numbers
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from attnmeta.errors import ConfigError

__all__ = ["LabelledSplit", "ImageSplit", "WITHIN", "class_groups", "check_episode_shape"]

# what every class of an episode may be required to share: nothing, or its alphabet
WITHIN = ("none", "alphabet")


@runtime_checkable
class LabelledSplit(Protocol):
    """Examples ``items [N, ...]``, int64 ``labels [N]`` in ``0..C-1``, ``class_names [C]``."""

    # read-only properties, so a dataclass field and an alias property both satisfy them
    @property
    def items(self) -> Tensor: ...

    @property
    def labels(self) -> Tensor: ...

    @property
    def class_names(self) -> list[str]: ...

    @property
    def split(self) -> str:
        """The class split's name for messages and file names ("" when it has none)."""


class GroupedSplit(LabelledSplit, Protocol):
    """A split whose classes fall into groups that episodes may stay within (Omniglot's
    alphabets, Lake et al. 2015); a data set declares it has them on its registry entry
    (``DatasetEntry.alphabets``), and its splits then offer this."""

    @property
    def class_alphabets(self) -> list[str]: ...


class ImageSplit:
    """What an image split's dataclass shares (``images [N, C, H, W]``, ``class_names
    [C]``): its length, ``items`` under the name :class:`LabelledSplit` uses, and its class
    count. A base, not a field holder: each split declares its own fields."""

    images: Tensor
    class_names: list[str]

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def items(self) -> Tensor:
        """``images``, under the name every :class:`LabelledSplit` uses."""
        return self.images

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}es" if noun.endswith("s") \
        else f"{count} {noun}s"


def class_groups(split: LabelledSplit, within: str, where: str) -> list[str] | None:
    """The group of each class ``[C]`` that episodes must stay within (``within``: one of
    :data:`WITHIN`), or None for ``"none"``. ``"alphabet"`` reads the split as a
    :class:`GroupedSplit`: the run layer refuses it (a ConfigError naming the key) for a
    data set whose entry does not declare alphabets, so a split without them here is a
    bug in that declaration."""
    if within not in WITHIN:
        raise ConfigError(f"{where}.within={within!r}: expected one of "
                          + ", ".join(map(repr, WITHIN)))
    if within == "none":
        return None
    grouped: GroupedSplit = split  # type: ignore[assignment]  (declared by its data set)
    return list(grouped.class_alphabets)


def check_episode_shape(split: LabelledSplit, n_way: int, k_shot: int, q_query: int,
                        where: str, *, split_name: str | None = None,
                        within: str = "none") -> None:
    """Raise a one-line ``ConfigError`` if ``n_way``-way ``k_shot``-shot ``q_query``-query
    episodes cannot be drawn from ``split``.

    Args:
        split: the examples ``items [N, ...]`` and ``labels [N]`` episodes draw from.
        n_way, k_shot, q_query: the episode shape (classes; support and query per class).
        where: the config key prefix the shape came from (e.g. ``"data.test"``); every
            message starts with it, so the user knows which setting to change.
        split_name: the split's name for the message ("the test split has ..."); default
            the split's own ``split`` attribute (the loaders set it), else none.
        within: ``"alphabet"``: every episode's classes share one alphabet, so some
            alphabet must have ``n_way`` classes (see :func:`class_groups`).

    Classes are counted as the sampler counts them: those with at least one example.
    """
    for name, value, low in (("n_way", n_way, 1), ("k_shot", k_shot, 1),
                             ("q_query", q_query, 0)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            raise ConfigError(f"{where}.{name}={value!r}: expected an integer >= {low}")
    labels, items = split.labels, split.items
    if labels.ndim != 1 or labels.shape[0] != items.shape[0]:
        raise ValueError(f"{where}: labels of shape {tuple(labels.shape)} for "
                         f"{items.shape[0]} examples: expected one label per example")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= len(split.class_names)):
        raise ValueError(f"{where}: labels span {int(labels.min())}..{int(labels.max())}: "
                         f"expected 0..{len(split.class_names) - 1} (one per class name)")
    if split_name is None:
        split_name = split.split or None
    the_split = f"the {split_name} split" if split_name else "the split"
    counts = torch.bincount(labels.long(), minlength=len(split.class_names))
    present = torch.nonzero(counts).flatten()
    if n_way > len(present):
        raise ConfigError(f"{where}: n_way={n_way} but {the_split} has "
                          f"{_plural(len(present), 'class')}: expected n_way <= {len(present)}")
    smallest = int(present[torch.argmin(counts[present])])
    fewest, needed = int(counts[smallest]), k_shot + q_query
    if needed > fewest:
        raise ConfigError(f"{where}: k_shot + q_query = {needed} but class "
                          f"{split.class_names[smallest]!r} has {_plural(fewest, 'example')}: "
                          f"expected at most {fewest}")
    groups = class_groups(split, within, where)
    if groups is not None:
        sizes: dict[str, int] = {}
        for c in present.tolist():
            sizes[groups[c]] = sizes.get(groups[c], 0) + 1
        largest = max(sizes.values())
        if n_way > largest:
            raise ConfigError(f"{where}: n_way={n_way} with within={within!r} but the largest "
                              f"{within} of {the_split} has {_plural(largest, 'class')}: "
                              f"expected n_way <= {largest}")
