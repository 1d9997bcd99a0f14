"""Labelled sentences for few-shot intent classification: what the text loaders share.

The two intent data sets (:mod:`attnmeta.tasks.clinc150`, Larson et al., EMNLP 2019;
:mod:`attnmeta.tasks.banking77`, Casanueva et al., 2020) are split **by class**: every
intent belongs to exactly one of meta-train / meta-val / meta-test, so no test intent is
seen in training, and a split's episodes draw from all of that intent's utterances (the
upstream train/val/test example splits are pooled). Class splits are fixed lists, made
once by ordering the intents by the SHA-256 of their names (a shuffle that needs no random
generator and so cannot change with a library version).

A split is tokenized by the run's tokenizer (:mod:`attnmeta.bpe`) into
:class:`LabelledTokens`, whose ``token_ids [N, L]`` the generic N-way K-shot sampler
(:class:`attnmeta.tasks.FewShotEpisodes`) draws episodes from unchanged.

This module imports neither loader (they import it); choosing a loader by data set name is
:mod:`attnmeta.tasks.intents`.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

import torch
from torch import Tensor

from attnmeta.errors import ConfigError, DataError, MissingDataError
from attnmeta.tasks.registry import DatasetEntry, register_dataset

if TYPE_CHECKING:
    from attnmeta.bpe import TextTokenizer

__all__ = ["TEXT_SPLITS", "LabelledTexts", "LabelledTokens",
           "ordered_by_digest", "labelled_texts", "tokenize_split", "check_split",
           "check_counts", "require_files", "load_sentences"]

TEXT_SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass
class LabelledTexts:
    """Sentences of one class split: ``texts [N]``, int64 ``labels [N]`` in ``0..C-1``
    (indexing ``class_names``, which are sorted), and the split's name ('' if unknown)."""

    texts: list[str]
    labels: Tensor
    class_names: list[str]
    split: str = ""

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class LabelledTokens:
    """A tokenized split: int64 ``token_ids [N, L]`` (padded with the tokenizer's
    ``pad_id``), ``labels [N]``, ``class_names [C]``, the original ``texts [N]`` and the
    split's name ('' if unknown)."""

    token_ids: Tensor
    labels: Tensor
    class_names: list[str]
    texts: list[str]
    split: str = ""

    def __len__(self) -> int:
        return self.token_ids.shape[0]

    @property
    def items(self) -> Tensor:
        """``token_ids``, under the name every :class:`attnmeta.tasks.LabelledSplit` uses."""
        return self.token_ids


def ordered_by_digest(names: Iterable[str]) -> list[str]:
    """``names`` ordered by the SHA-256 of their UTF-8 bytes: a fixed, seed-free shuffle."""
    return sorted(names, key=lambda name: hashlib.sha256(name.encode()).hexdigest())


def labelled_texts(rows: Iterable[tuple[str, str]], classes: Iterable[str], split: str = ""
                   ) -> LabelledTexts:
    """The ``(text, class)`` rows whose class is in ``classes``, labelled by the position of
    their class among the sorted ``classes``; rows keep their order. ``split`` names the
    class split in messages."""
    names = sorted(set(classes))
    index = {name: i for i, name in enumerate(names)}
    chosen = [(text, index[label]) for text, label in rows if label in index]
    return LabelledTexts([text for text, _ in chosen],
                         torch.tensor([label for _, label in chosen], dtype=torch.int64),
                         names, split)


def tokenize_split(split: LabelledTexts, tokenizer: "TextTokenizer", max_length: int
                   ) -> LabelledTokens:
    """``split`` as padded token ids ``[N, max_length]``."""
    return LabelledTokens(tokenizer.encode_batch(split.texts, max_length), split.labels,
                          split.class_names, split.texts, split.split)


def check_split(split: str) -> None:
    """Raise unless ``split`` is one of :data:`TEXT_SPLITS`."""
    if split not in TEXT_SPLITS:
        raise ConfigError(f"split={split!r}: expected one of {', '.join(map(repr, TEXT_SPLITS))}")


def check_counts(where: str, counts: Mapping[str, int], expected: Mapping[str, int]) -> None:
    """Raise if a class split's sizes differ from the documented ones."""
    if dict(counts) != dict(expected):
        raise DataError(f"{where}: class split sizes {dict(counts)}, expected {dict(expected)}")


def require_files(folder: Path, names: Sequence[str], dataset: str) -> None:
    """One line naming the first missing file and how to fetch it."""
    for name in names:
        if not (folder / name).is_file():
            raise MissingDataError(f"{dataset} file {folder / name} does not exist: expected "
                                   f"{', '.join(names)} in {folder}; `attnmeta download "
                                   f"{dataset} --data-root DIR` fetches them")


def load_sentences(root: str | Path, split: str) -> LabelledTexts:
    """A person's own sentences as a class split (``data.dataset: sentences``):
    ``root/<split>.csv`` with columns ``text,label`` (classes sorted by name); a one-line
    ``ValueError`` naming the file when it is missing or lacks a column or a row."""
    path = Path(root) / f"{split}.csv"
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = [row for row in csv.DictReader(handle) if any((v or "").strip()
                                                               for v in row.values())]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"cannot read {path} ({error}): expected a UTF-8 CSV with columns "
                        "text,label") from None
    if not rows or any(not (row.get("text") or "").strip() or not (row.get("label") or "").strip()
                       for row in rows):
        raise DataError(f"{path} has no rows, or a row without text or label: expected "
                        "columns text,label and a value in each")
    names = sorted({row["label"].strip() for row in rows})
    index = {name: i for i, name in enumerate(names)}
    return LabelledTexts([row["text"].strip() for row in rows],
                         torch.tensor([index[row["label"].strip()] for row in rows]), names,
                         split)


def _sentences(root: str | Path | None, split: str) -> LabelledTexts:
    if root is None:
        raise ConfigError("config key 'data.root' is not set: expected a folder holding "
                          "train.csv, val.csv and test.csv (columns text,label)")
    return load_sentences(root, split)


register_dataset("sentences", DatasetEntry(texts=_sentences))
