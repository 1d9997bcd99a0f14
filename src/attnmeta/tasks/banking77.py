"""BANKING77 (Casanueva et al., 2020, "Efficient Intent Detection with Dual Sentence
Encoders", arXiv:2003.04807), split by intent for few-shot learning.

13,083 customer-service queries in 77 fine-grained banking intents (upstream ``train.csv``
10,003 rows, 35 to 187 per intent; ``test.csv`` 3,080 rows, 40 per intent; no validation
split). Licence CC BY 4.0. Files, inside ``<data root>/banking77/`` (or a folder given
directly)::

    train.csv, test.csv   header "text,category"; texts with commas are quoted, and a
                          quoted text may span lines, so they are read with a CSV parser
    categories.json       the 77 intent names

**Class split** (fixed; :func:`banking77_class_split`): the 77 intents ordered by the
SHA-256 of their names; the first 17 are meta-test, the next 10 meta-val, the other 50
meta-train. BANKING77 has no domains to stratify over (it is one domain). Each intent's
train and test rows are pooled (75 to 227 utterances per intent).
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

from attnmeta.errors import DataError
from attnmeta.tasks.data_root import data_root_path, find_dataset_dir
from attnmeta.tasks.download import download_files
from attnmeta.tasks.registry import DatasetEntry, register_dataset
from attnmeta.tasks.text import (LabelledTexts, check_counts, check_split, labelled_texts,
                                 ordered_by_digest, require_files)

__all__ = ["BANKING77_URLS", "BANKING77_SHA256", "BANKING77_FILES", "CLASSES_PER_SPLIT",
           "find_banking77_dir", "read_banking77_csv", "read_banking77_categories",
           "banking77_class_split", "load_banking77", "download_banking77"]

logger = logging.getLogger(__name__)

_COMMIT = "57ec275d8078af65b7731c2a98be812d844a6d6b"
BANKING77_FILES: tuple[str, ...] = ("train.csv", "test.csv", "categories.json")
BANKING77_URLS: dict[str, str] = {
    name: ("https://raw.githubusercontent.com/PolyAI-LDN/task-specific-datasets/"
           f"{_COMMIT}/banking_data/{name}")
    for name in BANKING77_FILES
}
BANKING77_SHA256: dict[str, str] = {
    "train.csv": "b06e26ac675513959a63135f11b94ea7786ed02da65db93a5650d8838cbc664b",
    "test.csv": "d12d6e3bc4c3103966ae786dc435913c0c563dfa328f5a3646d0e62cfeeb474d",
    "categories.json": "53261da888122daf2d120d925458631d9619e15d82e56052e7a42e535ce32b63",
}
CSV_HEADER = ["text", "category"]
# intents per split, taken in this order from the digest-ordered list: test, val, rest train
CLASSES_PER_SPLIT: dict[str, int] = {"test": 17, "val": 10}


def find_banking77_dir(data_root: str | Path | None = None) -> Path:
    """``<data root>/banking77`` or, if it holds ``train.csv``, the root itself."""
    return find_dataset_dir(data_root, "banking77", "categories.json", "BANKING77",
                            "train.csv, test.csv and categories.json")


def read_banking77_categories(path: Path) -> list[str]:
    """The intent names of ``categories.json`` (a JSON list of distinct strings)."""
    try:
        names = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"{path} line {error.lineno} column {error.colno}: not valid JSON "
                        f"({error.msg})") from None
    if not (isinstance(names, list) and names and all(isinstance(n, str) and n for n in names)):
        raise DataError(f"{path}: expected a JSON list of intent names")
    if len(set(names)) != len(names):
        raise DataError(f"{path}: intent names repeat: expected each once")
    return names


def read_banking77_csv(path: Path, categories: list[str] | None = None
                       ) -> list[tuple[str, str]]:
    """``(text, category)`` rows of a BANKING77 CSV, read with a real CSV parser.

    Quoted fields may hold commas, doubled quotes and line breaks. A malformed row raises a
    one-line ``ValueError`` naming the file and the row's first line: a wrong header, a row
    without exactly 2 fields, an empty text, or a category not in ``categories``.
    """
    path = Path(path)
    known = None if categories is None else set(categories)
    rows: list[tuple[str, str]] = []
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle, strict=True)
            header = next(reader, None)
            if header != CSV_HEADER:
                raise DataError(f"{path} line 1: header is {header!r}, expected "
                                f"{','.join(CSV_HEADER)!r}")
            first_line = reader.line_num + 1
            for row in reader:
                where = f"{path} line {first_line}"
                first_line = reader.line_num + 1
                if not row:  # a blank line
                    continue
                if len(row) != 2:
                    raise DataError(f"{where}: {len(row)} fields {row!r:.80}, expected 2 "
                                    "(text,category); quote texts that contain commas")
                text, category = row
                if not text.strip():
                    raise DataError(f"{where}: empty text, expected an utterance")
                if known is not None and category not in known:
                    raise DataError(f"{where}: category {category!r} is not in "
                                    "categories.json: expected one of its 77 intents")
                rows.append((text, category))
    except csv.Error as error:
        raise DataError(f"{path} line {reader.line_num}: not valid CSV ({error})") from None
    except UnicodeDecodeError as error:
        raise DataError(f"{path} is not UTF-8 text ({error})") from None
    return rows


def banking77_class_split(categories: list[str]) -> dict[str, list[str]]:
    """``split -> sorted intents``: intents ordered by SHA-256 of their names, the first 17
    to 'test', the next 10 to 'val', the rest to 'train' (50 of the 77)."""
    ordered = ordered_by_digest(categories)
    n_test, n_val = CLASSES_PER_SPLIT["test"], CLASSES_PER_SPLIT["val"]
    if len(ordered) <= n_test + n_val:
        raise DataError(f"{len(ordered)} intents: expected more than {n_test + n_val} "
                        f"({n_test} test, {n_val} val, the rest train)")
    return {"test": sorted(ordered[:n_test]), "val": sorted(ordered[n_test:n_test + n_val]),
            "train": sorted(ordered[n_test + n_val:])}


def load_banking77(data_root: str | Path | None = None, split: str = "train") -> LabelledTexts:
    """All utterances (upstream train then test rows) of the intents of class split
    ``split`` ('train' | 'val' | 'test'): 50 / 10 / 17 intents on the full data set."""
    check_split(split)
    folder = find_banking77_dir(data_root)
    require_files(folder, BANKING77_FILES, "banking77")
    categories = read_banking77_categories(folder / "categories.json")
    rows = [row for name in ("train.csv", "test.csv")
            for row in read_banking77_csv(folder / name, categories)]
    missing = set(categories) - {category for _, category in rows}
    if missing:
        raise DataError(f"{folder}: intents {sorted(missing)[:3]} of categories.json have no "
                        "row in train.csv or test.csv: expected some for each")
    classes = banking77_class_split(categories)
    if len(categories) == 77:
        check_counts("BANKING77", {k: len(v) for k, v in classes.items()},
                     {"test": 17, "val": 10, "train": 50})
    return labelled_texts(rows, classes[split], split)


def download_banking77(data_root: str | Path | None = None) -> Path:
    """Fetch the upstream files (pinned commit) into ``<data_root>/banking77``, checked
    against their SHA-256 as :func:`attnmeta.tasks.download.download_files` does."""
    return download_files(data_root_path(data_root) / "banking77",
                          {file: BANKING77_URLS[file] for file in BANKING77_FILES},
                          {file: f"sha256:{BANKING77_SHA256[file]}" for file in BANKING77_FILES})


register_dataset("banking77", DatasetEntry(texts=load_banking77, download=download_banking77))
