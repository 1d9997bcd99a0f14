"""Checkpoints that survive a killed run, a full disk, and a damaged or edited file.

A checkpoint is a pair written into ``<run>/checkpoints/``:

- ``step_0000500.safetensors``: the learner's weights (``model/...``) and the optimiser's
  tensors (``optimizer/...``);
- ``step_0000500.json``: config, step, the optimiser's other state, RNG states, the sha256
  of the tensors file (``weights_sha256``), and ``record_sha256``, the sha256 of the
  record itself (canonical JSON, without that key), so an edited step or config is refused.

Both files are first written in full to temporaries (``.<name>.<random>.tmp``, flushed to
disk), then renamed into place (atomic on POSIX): the tensors first, the JSON last. So a
run killed or out of disk mid-write leaves the previous checkpoint as the latest complete
one; older checkpoints are pruned only after the new pair is in place, and the next save
removes the temporaries a killed run left. :func:`find_latest_checkpoint` skips a newest
checkpoint that is damaged anyway (and says why), falling back to the one before.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import hashlib
import json
import logging
import os
import random
import re
from pathlib import Path
from typing import Any, Collection

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from attnmeta.errors import CheckpointError  # re-exported: its old home
from attnmeta.files import atomic_write, file_digest, remove_stale_temporaries, write_synced

__all__ = ["save_checkpoint", "load_checkpoint", "read_checkpoint_record", "checkpoint_name",
           "find_latest_checkpoint", "latest_checkpoint", "resolve_checkpoint",
           "CheckpointError"]

logger = logging.getLogger(__name__)

_NAME = re.compile(r"step_(\d+)\.json")
_REQUIRED = ("step", "config", "optimizer", "rng", "weights_sha256")
_EXPECTED = "expected the record save_checkpoint writes"


def _one_line(error: BaseException) -> str:
    """An exception's text on one line (some libraries' messages span several)."""
    return " ".join(str(error).split()) or type(error).__name__


def _to_json(value: Any) -> Any:
    return value.tolist() if isinstance(value, np.ndarray) else int(value)


def _rng_state() -> dict[str, Any]:
    return {
        "torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode(),
        "numpy": json.loads(json.dumps(np.random.get_state(legacy=False), default=_to_json)),
        "python": repr(random.getstate()),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch_state = np.frombuffer(base64.b64decode(state["torch"]), dtype=np.uint8).copy()
    torch.set_rng_state(torch.from_numpy(torch_state))
    numpy_state = state["numpy"]  # copied, so the record handed back stays plain JSON
    key = np.asarray(numpy_state["state"]["key"], dtype=np.uint32)
    np.random.set_state({**numpy_state, "state": {**numpy_state["state"], "key": key}})
    random.setstate(ast.literal_eval(state["python"]))


def _split_optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer state dict -> (tensors keyed 'optimizer/<param>/<name>', JSON-able rest)."""
    state = optimizer.state_dict()
    tensors, plain_state = {}, {}
    for param_id, entries in state["state"].items():
        plain_state[str(param_id)] = {}
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer/{param_id}/{name}"] = value.detach().cpu().contiguous()
            else:
                plain_state[str(param_id)][name] = value
    return tensors, {"state": plain_state, "param_groups": state["param_groups"]}


def _join_optimizer_state(tensors: dict[str, torch.Tensor], plain: dict) -> dict:
    state: dict[int, dict[str, Any]] = {int(k): dict(v) for k, v in plain["state"].items()}
    for key, value in tensors.items():
        _, param_id, name = key.split("/", 2)
        state.setdefault(int(param_id), {})[name] = value
    return {"state": state, "param_groups": plain["param_groups"]}


def _record_digest(record: dict[str, Any]) -> str:
    """sha256 of the record's canonical JSON, ``record_sha256`` left out."""
    body = {k: v for k, v in record.items() if k != "record_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
                          ).hexdigest()


def _checkpoint_jsons(folder: Path) -> list[tuple[int, Path]]:
    """(step, path) of each ``step_*.json`` in ``folder``, oldest first (by number, so
    step 10,000,000 comes after 9,999,999)."""
    if not folder.is_dir():
        return []
    found = ((_NAME.fullmatch(p.name), p) for p in folder.glob("step_*.json"))
    return sorted((int(match.group(1)), p) for match, p in found if match)


def checkpoint_name(step: int) -> str:
    """The file name of step ``step``'s checkpoint record: ``step_0000500.json``."""
    return f"step_{step:07d}.json"


def _prune(folder: Path, step: int, keep: int, protect: Collection[int] = ()) -> None:
    """Keep the newest ``keep`` checkpoints up to ``step``, and those of the steps in
    ``protect`` (a selected model). Newer ones are left alone: they are damaged leftovers
    this run skipped (and will overwrite or outgrow), not history."""
    older = [(saved_step, path) for saved_step, path in _checkpoint_jsons(folder)
             if saved_step <= step]
    for saved_step, old in older[:-keep] if keep > 0 else []:
        if saved_step in protect:
            continue
        try:  # the record first: without it the weights are invisible to every reader
            old.unlink(missing_ok=True)
            old.with_suffix(".safetensors").unlink(missing_ok=True)
        except OSError as error:
            logger.warning("could not remove old checkpoint %s (%s)", old, _one_line(error))


def save_checkpoint(run_dir: Path, step: int, learner: nn.Module,
                    optimizer: torch.optim.Optimizer | None, config: dict[str, Any],
                    keep: int = 2, extra: dict[str, Any] | None = None,
                    protect: Collection[int] = ()) -> Path:
    """Write the checkpoint of ``step`` and keep only the newest ``keep`` (and those of the
    steps in ``protect``); returns its JSON path.

    Raises :class:`CheckpointError` if the files cannot be written (e.g. the disk is
    full); then nothing was pruned, no temporary file is left, and nothing was replaced
    unless the last rename failed (a re-saved step's pair then mismatches and is skipped).
    """
    folder = Path(run_dir) / "checkpoints"
    stem = Path(checkpoint_name(step)).stem
    weights_path, json_path = folder / f"{stem}.safetensors", folder / f"{stem}.json"
    tensors = {f"model/{k}": v.detach().cpu().contiguous() for k, v in learner.state_dict().items()}
    optimizer_plain = None
    if optimizer is not None:
        optimizer_tensors, optimizer_plain = _split_optimizer_state(optimizer)
        tensors.update(optimizer_tensors)
    remove_stale_temporaries(folder, "step_*")  # left by a run killed mid-write
    replacing, weights_in_place = json_path.exists(), False
    try:
        with atomic_write(json_path) as json_temp:
            with atomic_write(weights_path) as weights_temp:
                save_file(tensors, weights_temp)
                with safe_open(weights_temp, "pt"):
                    pass  # a short write that went unreported fails here, not at resume
                with open(weights_temp, "rb") as handle:
                    os.fsync(handle.fileno())
                record = {"step": step, "config": config, "optimizer": optimizer_plain,
                          "rng": _rng_state(), "weights_sha256": file_digest(weights_temp),
                          **(extra or {})}
                record = json.loads(json.dumps(record))  # the digest is of what a reader sees
                record["record_sha256"] = _record_digest(record)
                # Written before either rename, so a full disk replaces nothing.
                write_synced(json_temp, json.dumps(record, indent=1).encode())
            weights_in_place = True  # renamed; the JSON goes last
    except (OSError, SafetensorError) as error:
        if weights_in_place and not replacing:
            with contextlib.suppress(OSError):  # new weights that no record names
                weights_path.unlink()
        previous = find_latest_checkpoint(run_dir)[0]  # the one a resume would now use
        kept = (f"the previous checkpoint {previous.name} is kept" if previous
                else "no checkpoint was written")
        raise CheckpointError(f"could not save checkpoint {json_path} ({_one_line(error)}): "
                              f"{kept}; expected a writable folder with free space") from None
    _prune(folder, step, keep, protect)
    return json_path


def read_checkpoint_record(json_path: Path) -> dict[str, Any]:
    """The validated JSON record of a checkpoint, without loading any tensors.

    Raises :class:`CheckpointError` if it is unreadable, not a JSON object, lacks a key,
    was edited (``record_sha256`` does not match), or records another step than its name.
    """
    json_path = Path(json_path)
    try:
        record = json.loads(json_path.read_bytes().decode("utf-8"))
    except OSError as error:
        raise CheckpointError(f"cannot read checkpoint {json_path} "
                              f"({error.strerror or _one_line(error)}); {_EXPECTED}") from None
    except UnicodeDecodeError as error:
        raise CheckpointError(f"checkpoint {json_path} is not UTF-8 text (byte {error.start}); "
                              f"{_EXPECTED}") from None
    except json.JSONDecodeError as error:
        raise CheckpointError(f"checkpoint {json_path} is not valid JSON ({error.msg} at line "
                              f"{error.lineno} column {error.colno}); {_EXPECTED}") from None
    except RecursionError:
        raise CheckpointError(f"checkpoint {json_path} is JSON nested too deeply; "
                              f"{_EXPECTED}") from None
    if not isinstance(record, dict):
        kind = {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
            type(record), "number")
        raise CheckpointError(f"checkpoint {json_path} holds a JSON {kind}, not an object; "
                              f"expected an object with the keys {', '.join(_REQUIRED)}")
    missing = [key for key in _REQUIRED if key not in record]
    if missing:
        raise CheckpointError(f"checkpoint {json_path} lacks the key{'s' * (len(missing) > 1)} "
                              f"{', '.join(map(repr, missing))}; expected the keys "
                              f"{', '.join(_REQUIRED)}")
    if "record_sha256" not in record:
        raise CheckpointError(f"checkpoint {json_path} has no record_sha256: it is in the older "
                              "format, which cannot be checked for edits; expected a "
                              "checkpoint saved by this version of attnmeta")
    if record["record_sha256"] != _record_digest(record):
        raise CheckpointError(f"checkpoint {json_path} was edited or is corrupt: its contents "
                              "do not match its record_sha256; expected the record exactly as "
                              "save_checkpoint wrote it")
    step = record["step"]
    if not (type(step) is int and step >= 0 and isinstance(record["config"], dict)
            and isinstance(record["rng"], dict) and isinstance(record["weights_sha256"], str)
            and isinstance(record["optimizer"], (dict, type(None)))):
        raise CheckpointError(f"checkpoint {json_path} has a value of the wrong type; expected "
                              "an integer step, objects for config and rng, and a string "
                              "weights_sha256")
    name = _NAME.fullmatch(json_path.name)
    if name and int(name.group(1)) != step:
        raise CheckpointError(f"checkpoint {json_path} records step {step}, but its name says "
                              f"step {int(name.group(1))}; expected a file saved under its own "
                              "step (was it renamed?)")
    return record


def _unreadable(weights_path: Path, error: BaseException) -> CheckpointError:
    return CheckpointError(f"cannot read checkpoint weights {weights_path} ({_one_line(error)}); "
                           "expected a complete safetensors file")


def _check_weights(json_path: Path, record: dict[str, Any]) -> Path:
    """The weights file beside ``json_path``, once its sha256 and header check out."""
    weights_path = json_path.with_suffix(".safetensors")
    if not weights_path.is_file():
        raise CheckpointError(f"checkpoint weights {weights_path} are missing; expected them "
                              f"beside {json_path.name}")
    try:
        digest = file_digest(weights_path)
    except OSError as error:
        raise _unreadable(weights_path, error) from None
    if digest != record["weights_sha256"]:
        raise CheckpointError(f"checkpoint weights {weights_path} do not match the sha256 in "
                              f"{json_path.name}: the file is corrupt or from another run")
    try:  # a digest that matches a truncated file was edited to match: the header tells
        with safe_open(weights_path, "pt"):
            pass
    except Exception as error:  # safetensors raises its own types, not only OSError
        raise _unreadable(weights_path, error) from None
    return weights_path


def find_latest_checkpoint(run_dir: Path) -> tuple[Path | None, list[str]]:
    """The newest usable checkpoint's JSON in ``run_dir/checkpoints`` (record valid, weights
    matching its sha256) or None, and one line per newer one skipped, naming it and why."""
    skipped = []
    for _, json_path in reversed(_checkpoint_jsons(Path(run_dir) / "checkpoints")):
        try:
            _check_weights(json_path, read_checkpoint_record(json_path))
        except CheckpointError as error:
            skipped.append(f"skipped a damaged checkpoint: {error}")
            continue
        return json_path, skipped
    return None, skipped


def latest_checkpoint(run_dir: Path) -> Path | None:
    """:func:`find_latest_checkpoint`'s path; the skipped checkpoints are logged."""
    found, skipped = find_latest_checkpoint(run_dir)
    for line in skipped:
        logger.warning("%s", line)
    return found


def resolve_checkpoint(path: Path) -> Path:
    """A run folder, a checkpoints folder, or a checkpoint file -> the checkpoint JSON.

    For a folder, the newest usable checkpoint (damaged newer ones are logged and
    skipped); a file is taken as it is and checked when it is loaded.
    """
    path = Path(path)
    if path.is_dir():
        found, skipped = find_latest_checkpoint(path.parent if path.name == "checkpoints"
                                                else path)
        if found is None:
            damaged = f"; {len(skipped)} damaged: {' '.join(skipped)}" if skipped else ""
            raise CheckpointError(f"no usable checkpoint in {path}: expected "
                                  f"checkpoints/step_*.json with its weights{damaged}")
        for line in skipped:
            logger.warning("%s", line)
        return found
    if path.suffix in (".safetensors", ".json") and path.with_suffix(".json").is_file():
        return path.with_suffix(".json")
    what = "is not a checkpoint" if path.exists() else "does not exist"
    raise CheckpointError(f"checkpoint {path} {what}: expected a run folder or step_*.json")


def load_checkpoint(path: Path, learner: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None,
                    restore_rng: bool = False) -> dict[str, Any]:
    """Load weights (and optimiser / RNG state) into ``learner``; returns the JSON record.

    Raises :class:`CheckpointError` if the files are corrupt or edited, or the weights do
    not fit ``learner`` (a checkpoint of another model or config).
    """
    json_path = resolve_checkpoint(path)
    record = read_checkpoint_record(json_path)
    weights_path = _check_weights(json_path, record)
    try:
        tensors = load_file(weights_path)
    except Exception as error:  # SafetensorError, OSError, MemoryError, ...: say which file
        raise _unreadable(weights_path, error) from None
    model_state = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    expected = learner.state_dict()
    missing = sorted(set(expected) - set(model_state))
    unexpected = sorted(set(model_state) - set(expected))
    mismatched = sorted(k for k in set(expected) & set(model_state)
                        if expected[k].shape != model_state[k].shape)
    if missing or unexpected or mismatched:
        learner_config = record["config"].get("learner")
        name = learner_config.get("name", "?") if isinstance(learner_config, dict) else "?"
        details = "; ".join(part for part in (
            f"missing {missing[:3]}" if missing else "",
            f"unexpected {unexpected[:3]}" if unexpected else "",
            f"shape differs for {mismatched[:3]}" if mismatched else "") if part)
        raise CheckpointError(f"checkpoint {json_path} holds a different model (learner "
                              f"'{name}'): {details}; expected weights for this config's model")
    learner.load_state_dict(model_state)
    try:  # the record is bound by its digest, so a failure here is a different optimiser
        if optimizer is not None and record["optimizer"] is not None:
            optimizer_tensors = {k: v for k, v in tensors.items() if k.startswith("optimizer/")}
            optimizer.load_state_dict(_join_optimizer_state(optimizer_tensors,
                                                            record["optimizer"]))
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"checkpoint {json_path} holds optimiser state that does not fit "
                              f"this optimiser ({_one_line(error)}); expected the optimiser "
                              "of this config") from None
    try:
        if restore_rng:
            _set_rng_state(record["rng"])
    except (KeyError, TypeError, ValueError, RuntimeError, SyntaxError) as error:
        raise CheckpointError(f"checkpoint {json_path} holds unusable RNG states "
                              f"({_one_line(error)}); expected those save_checkpoint "
                              "records") from None
    return record
