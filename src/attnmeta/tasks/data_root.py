"""Where data sets live on disk: one root folder shared by every data set loader.

The root is chosen, in order, from an explicit argument (e.g. a ``--data-root`` option),
the ``ATTNMETA_DATA`` environment variable, or ``~/.cache/attnmeta/data``. Each data set
then has its own sub-folder, e.g. ``<root>/omniglot``.
"""

from __future__ import annotations

import os
from pathlib import Path

from attnmeta.errors import MissingDataError

__all__ = ["DATA_ROOT_ENV_VAR", "DEFAULT_DATA_ROOT", "data_root_path", "resolve_data_root",
           "find_dataset_dir"]

DATA_ROOT_ENV_VAR = "ATTNMETA_DATA"
DEFAULT_DATA_ROOT = "~/.cache/attnmeta/data"


def _data_root_with_origin(data_root: str | Path | None) -> tuple[Path, str]:
    """The chosen root and a few words saying where it came from (for error messages)."""
    if data_root is not None and str(data_root) != "":
        return Path(data_root).expanduser(), "argument"
    from_env = os.environ.get(DATA_ROOT_ENV_VAR, "")
    # an empty variable is treated as unset: `ATTNMETA_DATA= cmd` should not mean "cwd"
    if from_env:
        return Path(from_env).expanduser(), f"${DATA_ROOT_ENV_VAR}"
    return Path(DEFAULT_DATA_ROOT).expanduser(), "default"


def data_root_path(data_root: str | Path | None = None) -> Path:
    """The data root that would be used, whether or not it exists yet (for downloads)."""
    return _data_root_with_origin(data_root)[0]


def resolve_data_root(data_root: str | Path | None = None) -> Path:
    """The existing data root folder: ``data_root``, else ``$ATTNMETA_DATA``, else the default.

    Raises:
        FileNotFoundError: the chosen folder does not exist.
        NotADirectoryError: the chosen path is a file.
    """
    path, origin = _data_root_with_origin(data_root)
    if not path.exists():
        raise MissingDataError(
            f"data root {path} ({origin}) does not exist: pass --data-root or set "
            f"{DATA_ROOT_ENV_VAR}, or fetch a data set with `attnmeta download`"
        )
    if not path.is_dir():
        raise NotADirectoryError(
            f"data root {path} ({origin}) is a file, expected a directory: pass --data-root "
            f"or set {DATA_ROOT_ENV_VAR}"
        )
    return path


def find_dataset_dir(data_root: str | Path | None, name: str, marker: str, title: str,
                     expected: str) -> Path:
    """The folder of data set ``name``: ``<data root>/<name>``, or the root itself when it
    holds the data set's ``marker`` file (a root pointed straight at one data set). A
    one-line :class:`MissingDataError` otherwise, naming what the folder should hold
    (``expected``) and the ``attnmeta download`` line that fetches it."""
    root = resolve_data_root(data_root)
    if (root / name).is_dir():
        return root / name
    if (root / marker).is_file():
        return root
    raise MissingDataError(f"no {title} data under {root}: expected {root / name}/{expected}; "
                           f"`attnmeta download {name} --data-root {root}` fetches them")
