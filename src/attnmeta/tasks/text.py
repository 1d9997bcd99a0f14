"""Labelled sentences for few-shot intent classification, and what the text loaders share.

The two intent data sets (:mod:`attnmeta.tasks.clinc150`, Larson et al., EMNLP 2019;
:mod:`attnmeta.tasks.banking77`, Casanueva et al., 2020) are split **by class**: every
intent belongs to exactly one of meta-train / meta-val / meta-test, so no test intent is
seen in training, and a split's episodes draw from all of that intent's utterances (the
upstream train/val/test example splits are pooled). Class splits are fixed lists, made
once by ordering the intents by the SHA-256 of their names (a shuffle that needs no random
generator and so cannot change with a library version).

A split is tokenized by the run's tokenizer (:mod:`attnmeta.tokenizer`) into
:class:`LabelledTokens`, whose ``token_ids [N, L]`` the generic N-way K-shot sampler
(:class:`attnmeta.tasks.FewShotEpisodes`) draws episodes from unchanged.
"""

from __future__ import annotations

import hashlib
import logging
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

import torch
from torch import Tensor

from attnmeta.files import atomic_write

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from attnmeta.runs.config import DataConfig
    from attnmeta.tokenizer import TextTokenizer

__all__ = ["TEXT_DATASETS", "TEXT_SPLITS", "LabelledTexts", "LabelledTokens",
           "ordered_by_digest", "labelled_texts", "tokenize_split", "download_verified", "download_data_set",
           "load_text_split", "load_out_of_scope_tokens", "meta_train_texts"]

TEXT_DATASETS: tuple[str, ...] = ("clinc150", "banking77")
TEXT_SPLITS: tuple[str, ...] = ("train", "val", "test")
_DOWNLOAD_CHUNK_BYTES = 1 << 20


@dataclass
class LabelledTexts:
    """Sentences of one class split: ``texts [N]``, int64 ``labels [N]`` in ``0..C-1``
    (indexing ``class_names``, which are sorted)."""

    texts: list[str]
    labels: Tensor
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class LabelledTokens:
    """A tokenized split: int64 ``token_ids [N, L]`` (padded with the tokenizer's
    ``pad_id``), ``labels [N]``, ``class_names [C]`` and the original ``texts [N]``."""

    token_ids: Tensor
    labels: Tensor
    class_names: list[str]
    texts: list[str]

    def __len__(self) -> int:
        return self.token_ids.shape[0]


def ordered_by_digest(names: Iterable[str]) -> list[str]:
    """``names`` ordered by the SHA-256 of their UTF-8 bytes: a fixed, seed-free shuffle."""
    return sorted(names, key=lambda name: hashlib.sha256(name.encode()).hexdigest())


def labelled_texts(rows: Iterable[tuple[str, str]], classes: Iterable[str]) -> LabelledTexts:
    """The ``(text, class)`` rows whose class is in ``classes``, labelled by the position of
    their class among the sorted ``classes``; rows keep their order."""
    names = sorted(set(classes))
    index = {name: i for i, name in enumerate(names)}
    chosen = [(text, index[label]) for text, label in rows if label in index]
    return LabelledTexts([text for text, _ in chosen],
                         torch.tensor([label for _, label in chosen], dtype=torch.int64),
                         names)


def tokenize_split(split: LabelledTexts, tokenizer: "TextTokenizer", max_length: int
                   ) -> LabelledTokens:
    """``split`` as padded token ids ``[N, max_length]``."""
    return LabelledTokens(tokenizer.encode_batch(split.texts, max_length), split.labels,
                          split.class_names, split.texts)


def download_verified(url: str, destination: Path, expected_sha256: str,
                      timeout_s: float = 60.0) -> None:
    """Fetch ``url`` to ``destination`` atomically, failing if its SHA-256 differs.

    The bytes go to a temporary file beside ``destination`` and are renamed into place only
    once the checksum matches, so a broken transfer never leaves a file a later load trusts.
    """
    with atomic_write(destination, mode=0o644) as temp:
        digest = hashlib.sha256()
        with open(temp, "wb") as out, urllib.request.urlopen(url, timeout=timeout_s) as response:
            while chunk := response.read(_DOWNLOAD_CHUNK_BYTES):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != expected_sha256:
            raise ValueError(f"download of {url} has sha256 {digest.hexdigest()}, expected "
                             f"{expected_sha256}: corrupted transfer or changed upstream file; "
                             f"{destination} was not written")


def download_data_set(folder: Path, urls: dict[str, str], sha256: dict[str, str]) -> Path:
    """Fetch each ``name -> url`` of ``urls`` into ``folder/name``, checking ``sha256[name]``.

    Files already present are kept; each new one is written atomically.
    """
    for name, url in urls.items():
        destination = folder / name
        if destination.exists():
            logger.info("keeping existing %s", destination)
            continue
        logger.info("downloading %s to %s", url, destination)
        download_verified(url, destination, sha256[name])
    return folder


def _check_split(split: str) -> None:
    if split not in TEXT_SPLITS:
        raise ValueError(f"split={split!r}: expected one of {', '.join(map(repr, TEXT_SPLITS))}")


def load_text_split_texts(data: "DataConfig", split: str) -> LabelledTexts:
    """The untokenized class split ``split`` of ``data.dataset``."""
    _check_split(split)
    if data.dataset == "clinc150":
        from attnmeta.tasks.clinc150 import load_clinc150

        return load_clinc150(data.root, split)
    if data.dataset == "banking77":
        from attnmeta.tasks.banking77 import load_banking77

        return load_banking77(data.root, split)
    raise ValueError(f"data.dataset={data.dataset!r}: expected one of {', '.join(TEXT_DATASETS)}")


def load_text_split(data: "DataConfig", split: str, tokenizer: "TextTokenizer"
                    ) -> LabelledTokens:
    """Class split ``split`` ('train' | 'val' | 'test') of ``data.dataset``, tokenized to
    ``data.max_length`` ids per sentence."""
    return tokenize_split(load_text_split_texts(data, split), tokenizer, data.max_length)


def meta_train_texts(data: "DataConfig") -> list[str]:
    """Every sentence of the meta-train intents: the only text a run's tokenizer sees."""
    return load_text_split_texts(data, "train").texts


def load_out_of_scope_tokens(data: "DataConfig", split: str, tokenizer: "TextTokenizer"
                             ) -> Tensor:
    """CLINC150's out-of-scope utterances for ``split`` as ids ``[M, max_length]``
    (``oos_val`` for 'val', ``oos_test`` for 'test', ``oos_train`` for 'train')."""
    _check_split(split)
    if data.dataset != "clinc150":
        raise ValueError(f"data.dataset={data.dataset!r} has no out-of-scope utterances: "
                         "expected 'clinc150'")
    from attnmeta.tasks.clinc150 import load_clinc150_out_of_scope

    return tokenizer.encode_batch(load_clinc150_out_of_scope(data.root, split), data.max_length)


def check_counts(where: str, counts: Mapping[str, int], expected: Mapping[str, int]) -> None:
    """Raise if a class split's sizes differ from the documented ones."""
    if dict(counts) != dict(expected):
        raise ValueError(f"{where}: class split sizes {dict(counts)}, expected {dict(expected)}")


def require_files(folder: Path, names: Sequence[str], dataset: str) -> None:
    """One line naming the first missing file and how to fetch it."""
    for name in names:
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{dataset} file {folder / name} does not exist: expected "
                                    f"{', '.join(names)} in {folder}; `attnmeta download "
                                    f"{dataset} --data-root DIR` fetches them")
