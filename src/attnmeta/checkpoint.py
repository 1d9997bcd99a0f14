"""Checkpoints that survive a killed run.

A checkpoint is a pair written into ``<run>/checkpoints/``:

- ``step_000500.safetensors``: the learner's weights (``model/...``) and the optimiser's
  tensors (``optimizer/...``);
- ``step_000500.json``: config, step, the optimiser's other state, RNG states, and the
  sha256 of the tensors file.

Each file is written to a temporary name and renamed into place (atomic on POSIX); the
JSON goes last and names the digest of its tensors, so a run killed mid-write leaves the
previous checkpoint as the latest complete one.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from attnmeta.files import atomic_write, atomic_write_bytes

__all__ = ["save_checkpoint", "load_checkpoint", "latest_checkpoint", "resolve_checkpoint",
           "CheckpointError"]


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, or belongs to another model."""


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
    numpy_state = state["numpy"]
    numpy_state["state"]["key"] = np.asarray(numpy_state["state"]["key"], dtype=np.uint32)
    np.random.set_state(numpy_state)
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


def save_checkpoint(run_dir: Path, step: int, learner: nn.Module,
                    optimizer: torch.optim.Optimizer | None, config: dict[str, Any],
                    keep: int = 2, extra: dict[str, Any] | None = None) -> Path:
    """Write the checkpoint of ``step`` and keep only the newest ``keep``; returns its JSON path."""
    folder = Path(run_dir) / "checkpoints"
    stem = f"step_{step:07d}"
    tensors = {f"model/{k}": v.detach().cpu().contiguous() for k, v in learner.state_dict().items()}
    optimizer_plain = None
    if optimizer is not None:
        optimizer_tensors, optimizer_plain = _split_optimizer_state(optimizer)
        tensors.update(optimizer_tensors)
    with atomic_write(folder / f"{stem}.safetensors") as temp:
        save_file(tensors, temp)
        digest = hashlib.sha256(temp.read_bytes()).hexdigest()
    record = {"step": step, "config": config, "optimizer": optimizer_plain, "rng": _rng_state(),
              "weights_sha256": digest, **(extra or {})}
    json_path = folder / f"{stem}.json"
    atomic_write_bytes(json_path, json.dumps(record, indent=1).encode())
    for old in sorted(folder.glob("step_*.json"))[:-keep] if keep > 0 else []:
        old.with_suffix(".safetensors").unlink(missing_ok=True)
        old.unlink(missing_ok=True)
    return json_path


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint's JSON in ``run_dir/checkpoints``, or None."""
    folder = Path(run_dir) / "checkpoints"
    candidates = sorted(folder.glob("step_*.json")) if folder.is_dir() else []
    for json_path in reversed(candidates):
        if json_path.with_suffix(".safetensors").is_file():
            return json_path
    return None


def resolve_checkpoint(path: Path) -> Path:
    """A run folder, a checkpoints folder, or a checkpoint file -> the checkpoint JSON."""
    path = Path(path)
    if path.is_dir():
        found = latest_checkpoint(path) or latest_checkpoint(path.parent)
        if found is None:
            raise CheckpointError(f"no checkpoint in {path}: expected checkpoints/step_*.json")
        return found
    if path.suffix in (".safetensors", ".json") and path.with_suffix(".json").is_file():
        return path.with_suffix(".json")
    raise CheckpointError(f"checkpoint {path} does not exist: expected a run folder or step_*.json")


def load_checkpoint(path: Path, learner: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None,
                    restore_rng: bool = False) -> dict[str, Any]:
    """Load weights (and optimiser / RNG state) into ``learner``; returns the JSON record.

    Raises :class:`CheckpointError` if the files are corrupt or the weights do not fit
    ``learner`` (a checkpoint of another model or config).
    """
    json_path = resolve_checkpoint(path)
    try:
        record = json.loads(json_path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"checkpoint {json_path} is not valid JSON ({error})") from None
    weights_path = json_path.with_suffix(".safetensors")
    if not weights_path.is_file():
        raise CheckpointError(f"checkpoint weights {weights_path} are missing")
    if hashlib.sha256(weights_path.read_bytes()).hexdigest() != record.get("weights_sha256"):
        raise CheckpointError(f"checkpoint weights {weights_path} do not match the sha256 in "
                              f"{json_path.name}: the file is corrupt or from another run")
    tensors = load_file(weights_path)
    model_state = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    expected = learner.state_dict()
    missing = sorted(set(expected) - set(model_state))
    unexpected = sorted(set(model_state) - set(expected))
    mismatched = sorted(k for k in set(expected) & set(model_state)
                        if expected[k].shape != model_state[k].shape)
    if missing or unexpected or mismatched:
        name = record.get("config", {}).get("learner", {}).get("name", "?")
        details = "; ".join(part for part in (
            f"missing {missing[:3]}" if missing else "",
            f"unexpected {unexpected[:3]}" if unexpected else "",
            f"shape differs for {mismatched[:3]}" if mismatched else "") if part)
        raise CheckpointError(f"checkpoint {json_path} holds a different model (learner "
                              f"'{name}'): {details}; expected weights for this config's model")
    learner.load_state_dict(model_state)
    if optimizer is not None and record.get("optimizer") is not None:
        optimizer_tensors = {k: v for k, v in tensors.items() if k.startswith("optimizer/")}
        optimizer.load_state_dict(_join_optimizer_state(optimizer_tensors, record["optimizer"]))
    if restore_rng:
        _set_rng_state(record["rng"])
    return record
