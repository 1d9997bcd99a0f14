"""Writing files so that nothing a user had is lost when a process dies mid-write."""

from __future__ import annotations

import hashlib
import os
import tempfile
import unicodedata
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

__all__ = ["atomic_write", "atomic_write_bytes", "write_synced", "remove_stale_temporaries",
           "file_digest", "NamedPath", "named_path", "shown_name"]

# atomic_write's temporaries are ".<name>.<random>.tmp" beside the file they become.
_TEMP_SUFFIX = ".tmp"


def _temp_prefix(name: str) -> str:
    return f".{name}."


@contextmanager
def atomic_write(path: Path, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` when the block ends.

    The rename is atomic on POSIX, so readers see either the old file or the complete new
    one. If the block raises, the temporary file is removed and ``path`` is untouched.
    ``mode`` sets the file's permissions (``mkstemp`` creates it private, 0600). The
    temporary is named ``.<name>.<random>.tmp``; a process killed inside the block leaves
    it behind (see :func:`remove_stale_temporaries`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path.name),
                                     suffix=_TEMP_SUFFIX)
    os.close(fd)
    try:
        yield Path(temp_name)
        if mode is not None:
            os.chmod(temp_name, mode)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def write_synced(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and flush it to disk (before a rename makes it visible)."""
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, flushed to disk before the rename."""
    with atomic_write(path) as temp:
        write_synced(temp, data)


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """The hex ``algorithm`` ('sha256' | 'md5') digest of a file, read in chunks (a
    checkpoint or a data set may not fit in memory twice)."""
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def remove_stale_temporaries(folder: Path, name_glob: str = "*") -> list[Path]:
    """Remove the temporaries :func:`atomic_write` left in ``folder`` (not below it) for
    files named like ``name_glob``, i.e. plain files ``.<name_glob>.<random>.tmp``.

    Only call it while no other process writes those files there: it cannot tell a
    temporary of a killed process from one still being written. Best effort: a file that
    cannot be removed is left. Returns the removed paths.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in sorted(folder.glob(f"{_temp_prefix(name_glob)}*{_TEMP_SUFFIX}")):
        if not path.is_file():
            continue  # a folder that happens to match is not ours
        try:
            path.unlink()
        except OSError:
            continue  # only wasted space; it must not stop the write that called us
        removed.append(path)
    return removed


class NamedPath(type(Path())):  # type: ignore[misc]
    """A file that messages and reports name otherwise than by its path: an upload that
    ``attnmeta serve`` stored as ``<its folder>/adapt-0001/0003-cat.png`` is ``cat.png``,
    as it was sent (see :func:`named_path`). Every other use of it is its path's."""

    shown: str


def named_path(path: str | Path, shown: str) -> NamedPath:
    """``path``, named ``shown`` in messages and reports (:func:`shown_name`)."""
    named = NamedPath(path)
    named.shown = shown
    return named


def shown_name(item: Any) -> str:
    """How messages and reports name an example: a :class:`NamedPath` by its name, else as
    a string; bytes of a file name that are not UTF-8 shown as U+FFFD (the file is read as
    it is, and its name can be written to JSON)."""
    name = item.shown if isinstance(item, NamedPath) else str(item)
    if any(unicodedata.category(c) == "Cs" for c in name):
        name = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return name
