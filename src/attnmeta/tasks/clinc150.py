"""CLINC150 (Larson et al., EMNLP 2019, "An Evaluation Dataset for Intent Classification
and Out-of-Scope Prediction"), split by intent for few-shot learning.

150 intents in 10 domains of 15 (``domains.json``), 150 utterances each (upstream 100 train
/ 20 val / 30 test, pooled here), plus 1200 out-of-scope utterances (``oos_train`` 100,
``oos_val`` 100, ``oos_test`` 1000). Licence CC BY 3.0. Files, inside ``<data root>/clinc150/``
(or a folder given directly)::

    data_full.json   {"train": [[text, intent], ...], "val": ..., "test": ...,
                      "oos_train": [[text, "oos"], ...], "oos_val": ..., "oos_test": ...}
    domains.json     {"banking": [15 intents], ...}

**Class split** (fixed; :func:`clinc150_class_split`), stratified over the domains so every
split covers all 10 of them: within each domain the 15 intents are ordered by the SHA-256
of their names, the first 3 go to meta-test, the next 2 to meta-val and the other 10 to
meta-train: 100 / 20 / 30 intents, mirroring the upstream 100 / 20 / 30 examples per intent.
Out-of-scope utterances keep their upstream split (``oos_val`` picks the rejection threshold
on meta-val, ``oos_test`` measures it on meta-test).
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attnmeta.errors import ConfigError, DataError
from attnmeta.tasks.data_root import data_root_path, find_dataset_dir
from attnmeta.tasks.download import download_files
from attnmeta.tasks.registry import DatasetEntry, register_dataset
from attnmeta.tasks.text import (TEXT_SPLITS, LabelledTexts, check_counts, check_split,
                                 labelled_texts, ordered_by_digest, require_files)

__all__ = ["CLINC150_URLS", "CLINC150_SHA256", "CLINC150_FILES", "OUT_OF_SCOPE_INTENT",
           "INTENTS_PER_DOMAIN_SPLIT", "Clinc150", "find_clinc150_dir", "read_clinc150",
           "clinc150_class_split", "load_clinc150", "load_clinc150_out_of_scope",
           "download_clinc150"]

logger = logging.getLogger(__name__)

_COMMIT = "828f8093932c8fe6ca7936c3d2e52903b1c523de"
CLINC150_FILES: tuple[str, ...] = ("data_full.json", "domains.json")
CLINC150_URLS: dict[str, str] = {
    name: f"https://raw.githubusercontent.com/clinc/oos-eval/{_COMMIT}/data/{name}"
    for name in CLINC150_FILES
}
CLINC150_SHA256: dict[str, str] = {
    "data_full.json": "36923c3705a59e08fe9c3883d8bc2dd966ef93e22cb78ac41171782a698d56e0",
    "domains.json": "b947b579d3b8e74b06f93b01083d8efaff2888b43a3e362533bd88a6e1211b3a",
}
OUT_OF_SCOPE_INTENT = "oos"
IN_SCOPE_KEYS = ("train", "val", "test")
OUT_OF_SCOPE_KEYS = {"train": "oos_train", "val": "oos_val", "test": "oos_test"}
# intents of each domain per split, taken in this order: test, val, then the rest (train)
INTENTS_PER_DOMAIN_SPLIT: dict[str, int] = {"test": 3, "val": 2}


@dataclass
class Clinc150:
    """The parsed files: in-scope ``(text, intent)`` rows (upstream train, val, test in
    that order), out-of-scope texts per upstream split, and ``domain -> intents``."""

    rows: list[tuple[str, str]]
    out_of_scope: dict[str, list[str]]
    domains: dict[str, list[str]]


def find_clinc150_dir(data_root: str | Path | None = None) -> Path:
    """``<data root>/clinc150`` or, if it holds ``data_full.json``, the root itself."""
    return find_dataset_dir(data_root, "clinc150", "data_full.json", "CLINC150",
                            "data_full.json and domains.json")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"{path} line {error.lineno} column {error.colno}: not valid JSON "
                        f"({error.msg})") from None
    except UnicodeDecodeError as error:
        raise DataError(f"{path} is not UTF-8 text ({error})") from None


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _rows(path: Path, data: dict, key: str, out_of_scope: bool) -> list[tuple[str, str]]:
    rows = data.get(key)
    if not isinstance(rows, list):
        raise DataError(f"{path}: key {key!r} is {type(rows).__name__}, expected a list of "
                        "[text, intent] pairs")
    parsed = []
    for index, row in enumerate(rows):
        if not (isinstance(row, list) and len(row) == 2 and _is_text(row[0])
                and _is_text(row[1])):
            raise DataError(f"{path}: {key}[{index}] is {json.dumps(row)[:80]}: expected "
                            "[text, intent] with two non-empty strings")
        if (row[1] == OUT_OF_SCOPE_INTENT) != out_of_scope:
            expected = f"intent {OUT_OF_SCOPE_INTENT!r}" if out_of_scope else \
                f"an in-scope intent (not {OUT_OF_SCOPE_INTENT!r})"
            raise DataError(f"{path}: {key}[{index}] has intent {row[1]!r}: expected {expected}")
        parsed.append((row[0], row[1]))
    return parsed


def read_clinc150(folder: Path) -> Clinc150:
    """Parse and check ``data_full.json`` and ``domains.json`` in ``folder``.

    Raises ``ValueError`` naming the file and the bad entry (JSON syntax errors with their
    line and column; malformed rows as ``key[index]``), and ``FileNotFoundError`` naming a
    missing file. The parse is kept in memory (a run reads several splits) until either
    file's size or modification time changes; nothing is written to disk.
    """
    folder = Path(folder)
    require_files(folder, CLINC150_FILES, "clinc150")
    stamps = tuple((s.st_size, s.st_mtime_ns) for s in
                   ((folder / name).stat() for name in CLINC150_FILES))
    return _read_clinc150(folder.resolve(), stamps)


@functools.lru_cache(maxsize=4)
def _read_clinc150(folder: Path, stamps: tuple) -> Clinc150:
    data_path, domains_path = folder / "data_full.json", folder / "domains.json"
    data = _read_json(data_path)
    if not isinstance(data, dict):
        raise DataError(f"{data_path}: top level is {type(data).__name__}, expected an object "
                        f"with keys {', '.join(IN_SCOPE_KEYS + tuple(OUT_OF_SCOPE_KEYS.values()))}")
    rows = [row for key in IN_SCOPE_KEYS for row in _rows(data_path, data, key, False)]
    out_of_scope = {split: [text for text, _ in _rows(data_path, data, key, True)]
                    for split, key in OUT_OF_SCOPE_KEYS.items()}
    domains = _read_json(domains_path)
    if not (isinstance(domains, dict) and all(
            isinstance(v, list) and all(_is_text(i) for i in v) for v in domains.values())):
        raise DataError(f"{domains_path}: expected an object mapping each domain to a list "
                        "of intent names")
    owner: dict[str, str] = {}
    for domain, intents in domains.items():
        for intent in intents:
            if intent in owner:
                raise DataError(f"{domains_path}: intent {intent!r} is in domains "
                                f"{owner[intent]!r} and {domain!r}: expected one domain each")
            owner[intent] = domain
    seen = {intent for _, intent in rows}
    if seen - set(owner):
        raise DataError(f"{data_path}: intents {sorted(seen - set(owner))[:3]} are in no "
                        f"domain of {domains_path}: expected every intent listed there")
    if set(owner) - seen:
        raise DataError(f"{domains_path}: intents {sorted(set(owner) - seen)[:3]} have no "
                        f"utterance in {data_path}: expected each to have some")
    return Clinc150(rows, out_of_scope, {d: list(v) for d, v in domains.items()})


def clinc150_class_split(domains: dict[str, list[str]]) -> dict[str, list[str]]:
    """``split -> sorted intents``: per domain, intents ordered by SHA-256 of their names,
    the first 3 to 'test', the next 2 to 'val', the rest to 'train' (100/20/30 in all)."""
    needed = sum(INTENTS_PER_DOMAIN_SPLIT.values()) + 1
    split: dict[str, list[str]] = {name: [] for name in TEXT_SPLITS}
    for domain in sorted(domains):
        intents = ordered_by_digest(domains[domain])
        if len(intents) < needed:
            raise DataError(f"domain {domain!r} has {len(intents)} intents: expected at least "
                            f"{needed} (3 test, 2 val, 1 or more train)")
        n_test, n_val = INTENTS_PER_DOMAIN_SPLIT["test"], INTENTS_PER_DOMAIN_SPLIT["val"]
        split["test"] += intents[:n_test]
        split["val"] += intents[n_test:n_test + n_val]
        split["train"] += intents[n_test + n_val:]
    return {name: sorted(intents) for name, intents in split.items()}


def load_clinc150(data_root: str | Path | None = None, split: str = "train") -> LabelledTexts:
    """All utterances of the intents of class split ``split`` ('train' | 'val' | 'test').

    The full data set gives 100 / 20 / 30 intents of 150 utterances each.
    """
    check_split(split)
    data = read_clinc150(find_clinc150_dir(data_root))
    classes = clinc150_class_split(data.domains)
    if len(data.domains) == 10 and sum(map(len, data.domains.values())) == 150:
        check_counts("CLINC150", {k: len(v) for k, v in classes.items()},
                     {"train": 100, "val": 20, "test": 30})
    return labelled_texts(data.rows, classes[split], split)


def load_clinc150_out_of_scope(data_root: str | Path | None = None, split: str = "test"
                               ) -> list[str]:
    """Out-of-scope utterances: ``oos_<split>`` (100 train, 100 val, 1000 test upstream)."""
    if split not in OUT_OF_SCOPE_KEYS:
        raise ConfigError(f"split={split!r}: expected one of "
                          f"{', '.join(map(repr, OUT_OF_SCOPE_KEYS))}")
    return read_clinc150(find_clinc150_dir(data_root)).out_of_scope[split]


def download_clinc150(data_root: str | Path | None = None) -> Path:
    """Fetch the upstream files (pinned commit) into ``<data_root>/clinc150``, checked
    against their SHA-256 as :func:`attnmeta.tasks.download.download_files` does."""
    return download_files(data_root_path(data_root) / "clinc150",
                          {file: CLINC150_URLS[file] for file in CLINC150_FILES},
                          {file: f"sha256:{CLINC150_SHA256[file]}" for file in CLINC150_FILES})


register_dataset("clinc150", DatasetEntry(texts=load_clinc150, download=download_clinc150,
                                          out_of_scope=load_clinc150_out_of_scope))
