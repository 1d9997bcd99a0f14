"""A run folder: the place a run owns, its lock, its log, and its results.

A run writes only into a folder it owns: a new or empty folder becomes a run when the run
writes its marker (``.attnmeta-run``, naming the run kind); a non-empty folder without it
is somebody else's and is refused, so ``--out ~/photos`` never overwrites a user's
``config.yaml``. While a run trains, the folder is locked (``filelock``; the holder's
process id is written beside the lock), so a second ``attnmeta train`` on the same folder
stops with an error instead of interleaving its log with the first.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

import yaml
from filelock import FileLock, Timeout

from attnmeta.checkpoint import CheckpointError, read_checkpoint_record, resolve_checkpoint
from attnmeta.errors import RunError
from attnmeta.files import atomic_write_bytes
from attnmeta.runs.config import config_from_dict, config_kind
from attnmeta.runs.kinds import RunKind, find_run_kind, kind_of, run_kind_named
from attnmeta.runs.results import Result

__all__ = ["RunError", "RunFolder", "RunLog", "write_result", "run_kind", "read_run", "MARKER"]

logger = logging.getLogger(__name__)

MARKER = ".attnmeta-run"
LOCK, OWNER = ".lock", ".lock.owner"


def write_result(result: Result) -> str | None:
    """Write a result's JSON (:meth:`Result.to_dict`) atomically to its ``result_path``;
    returns that path, or None after a one-line warning when the write failed (a read-only
    folder, a full disk): an evaluation's figures are printed whether or not they could be
    saved."""
    path = result.result_path
    try:
        atomic_write_bytes(Path(path), json.dumps(result.to_dict(), indent=1).encode())
    except OSError as error:
        logger.warning("could not write %s (%s); the result is not saved", path,
                       error.strerror or error)
        return None
    return path


def run_kind(path: Path) -> RunKind:
    """The kind of the run a folder or checkpoint holds (its checkpoint's config says)."""
    config = read_checkpoint_record(resolve_checkpoint(Path(path)))["config"]
    return config_kind(config if isinstance(config, dict) else {})


def read_run(path: Path, kind: str) -> tuple[Path, dict[str, Any], Any]:
    """A run folder (its model: the checkpoint its newest valid one names as selected, with
    ``train.select: best``, else that newest one) or a checkpoint file (as it is) of a
    ``kind`` run: (the checkpoint JSON, its record, its checked config). A run of another
    kind is a CheckpointError naming both."""
    json_path = resolve_checkpoint(Path(path))
    record = read_checkpoint_record(json_path)
    selected = record.get("selected")
    if Path(path).is_dir() and selected and selected["checkpoint"] != json_path.name:
        chosen = json_path.with_name(selected["checkpoint"])
        if not chosen.is_file():
            raise CheckpointError(
                f"run folder {path}: its selected checkpoint {chosen.name} (best "
                f"{selected['metric']} {selected['value']:.4f} at step {selected['step']}, "
                f"named by {json_path.name}) is missing: expected it in {json_path.parent} "
                "(or pass a checkpoint file to read another)")
        json_path, record = chosen, read_checkpoint_record(chosen)
    config = config_from_dict(record["config"], saved=True)
    found, expected = kind_of(config), run_kind_named(kind)
    if found != expected:
        raise CheckpointError(f"checkpoint {json_path} is of {found.description}: "
                              f"expected {expected.description}")
    return json_path, record, config


class RunFolder:
    """The folder of one run of ``kind``, claimed for writing by :meth:`claim`."""

    def __init__(self, path: Path, kind: str, lock: FileLock | None = None) -> None:
        self.path, self.kind, self._lock = Path(path), kind, lock

    @classmethod
    def claim(cls, path: Path, kind: str) -> "RunFolder":
        """Own ``path`` for a run of ``kind``: create it (or accept it empty or already a run
        of that kind), take its lock, write the marker."""
        path = Path(path)
        marker = path / MARKER
        if path.exists() and not path.is_dir():
            raise RunError(f"run folder {path} is a file: expected a folder (--out DIR)")
        if path.is_dir() and not marker.is_file() and any(path.iterdir()):
            raise RunError(f"run folder {path} is not empty and is not an attnmeta run (no "
                           f"{MARKER} in it): expected a new or empty folder; nothing was "
                           "written there")
        if marker.is_file():
            found = _marker_kind(marker)
            # an alias is the same kind (a run marked before the kind was renamed)
            if find_run_kind(found) != run_kind_named(kind):
                raise RunError(f"run folder {path} holds a {found} run: expected a {kind} "
                               "run (or a new --out folder)")
        try:
            path.mkdir(parents=True, exist_ok=True)
            lock = FileLock(path / LOCK, blocking=False)
            lock.acquire()
        except Timeout:
            owner = (path / OWNER).read_text().strip() if (path / OWNER).is_file() else "?"
            raise RunError(f"run folder {path} is in use by another run ({owner}): expected "
                           "one run per folder at a time (wait for it, or use another --out)"
                           ) from None
        except OSError as error:
            raise RunError(f"cannot write run folder {path} ({error.strerror or error}): "
                           "expected a folder this user can write") from None
        atomic_write_bytes(path / OWNER, f"process {os.getpid()} on {socket.gethostname()}, "
                           f"since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        if not marker.is_file():
            atomic_write_bytes(marker, json.dumps({"kind": kind}).encode())
        return cls(path, kind, lock)

    def release(self) -> None:
        if self._lock is not None:
            (self.path / OWNER).unlink(missing_ok=True)
            self._lock.release()
            self._lock = None

    def __enter__(self) -> "RunFolder":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def write_config(self, config: dict[str, Any]) -> None:
        atomic_write_bytes(self.path / "config.yaml",
                           yaml.safe_dump(config, sort_keys=False).encode())


def _marker_kind(marker: Path) -> str:
    try:
        return str(json.loads(marker.read_text())["kind"])
    except (OSError, ValueError, KeyError, TypeError):
        raise RunError(f"run marker {marker} is unreadable: expected the JSON an attnmeta run "
                       "writes ({\"kind\": ...})") from None


class RunLog:
    """A run's ``log.jsonl`` and TensorBoard scalars (``tb/``); a no-op when not ``enabled``
    (ranks other than 0). Resuming at step ``s`` drops the rows after ``s`` that the killed
    run wrote (the resumed run writes them again) from both."""

    def __init__(self, run_dir: Path, enabled: bool, resumed_at: int = 0) -> None:
        self.path, self.writer = Path(run_dir) / "log.jsonl", None
        if not enabled:
            return
        if resumed_at and self.path.is_file():
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= resumed_at]
            atomic_write_bytes(self.path, "".join(line + "\n" for line in kept).encode())
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(str(Path(run_dir) / "tb"),
                                    purge_step=resumed_at + 1 if resumed_at else None)

    def write(self, step: int, elapsed_s: float, scalars: dict[str, Any], group: str) -> None:
        """Append ``{step, elapsed_s, **scalars}`` to log.jsonl; numbers also to TensorBoard
        as ``group/name``."""
        if self.writer is None:
            return
        for name, value in scalars.items():
            if isinstance(value, (int, float)):
                self.writer.add_scalar(f"{group}/{name}", value, step)
        with open(self.path, "a") as handle:
            handle.write(json.dumps({"step": step, "elapsed_s": elapsed_s, **scalars}) + "\n")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
