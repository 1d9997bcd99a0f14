"""The run kinds, as one registry: each kind's schema, train, evaluate and load.

A run kind is one module that ends with one line registering its entry,
``register_run_kind(RunKind(...))`` (the entry lives beside what it describes, as timm's
``@register_model`` does); ``attnmeta train`` and ``attnmeta eval``, the config reader
(:mod:`attnmeta.runs.config`), the run folder's checks (:mod:`attnmeta.runs.folder`) and
:class:`~attnmeta.fewshot.FewShotClassifier` look a kind up here and never ask for one by
name. The built-in kinds' modules are imported on the first lookup (so this module imports
none of them, and they may import the config reader that imports this).

``episodic`` was called ``supervised`` before 0.x: its alias keeps old configs
(``kind: supervised``), run folders and checkpoints readable.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from attnmeta.errors import ConfigError, RunError

__all__ = ["RunKind", "register_run_kind", "run_kinds", "run_kind_named", "find_run_kind",
           "implicit_run_kind", "kind_of", "train_config"]

# The modules of the built-in kinds, each registering itself at its bottom.
BUILT_IN = ("attnmeta.runs.episodic", "attnmeta.runs.rl", "attnmeta.runs.pretrain")


@dataclass(frozen=True)
class RunKind:
    """One run kind.

    name: the config's top-level ``kind:`` and the run folder marker's.
    schema: the config dataclass (fields ``name``, ``kind`` unless implicit, sections with
        :func:`attnmeta.runs.schema.setting` keys, and ``cross_problems()``).
    description: the kind in one phrase for messages ("a meta-RL run (kind: rl)").
    train: ``train(config, run_dir, resume=, progress=, command=, will_evaluate=)``, a
        :class:`~attnmeta.runs.results.TrainResult`.
    evaluate: ``evaluate(request)`` of an :class:`~attnmeta.runs.evaluation.EvalRequest`, a
        :class:`~attnmeta.runs.results.Result`; it refuses options the kind has no use for.
    load: ``load(checkpoint, data_root=None)``, the run read back as a classifier of
        classes (:class:`~attnmeta.runs.episodic.LoadedRun`); None for a kind with none
        (meta-RL).
    build: ``build(config, num_classes)``, the learner of a saved classifier's architecture
        (fresh weights: :mod:`attnmeta.fewshot.model_folder`); None with no ``load``.
    counts_classes: the learner's width is the train split's class count (``num_classes``,
        recorded with the run and in a saved model), not ``data.train.n_way``.
    reads_data: whether the kind reads a data set (``data.root``, ``--data-root``).
    resumable: the config keys (or key prefixes) a resume may change.
    aliases: older names of the kind, still read (configs, markers, checkpoints).
    implicit: a config without a ``kind:`` key is of this kind (one kind only).
    """

    name: str
    schema: type
    description: str
    train: Callable[..., Any]
    evaluate: Callable[[Any], Any]
    load: Callable[..., Any] | None = None
    build: Callable[[Any, int | None], Any] | None = None
    counts_classes: bool = False
    reads_data: bool = True
    resumable: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    implicit: bool = False


_KINDS: dict[str, RunKind] = {}      # every name and alias -> its kind


def register_run_kind(kind: RunKind) -> RunKind:
    """Add ``kind`` (a name or alias already another kind's is a ValueError: a bug)."""
    for name in (kind.name, *kind.aliases):
        if _KINDS.get(name, kind) != kind:
            raise ValueError(f"run kind {name!r} is registered twice")
    if kind.implicit and any(k.implicit and k != kind for k in _KINDS.values()):
        raise ValueError(f"run kind {kind.name!r}: another kind is already the implicit one")
    for name in (kind.name, *kind.aliases):
        _KINDS[name] = kind
    return kind


def _load_built_ins() -> None:
    for module in BUILT_IN:
        importlib.import_module(module)


def run_kinds() -> tuple[RunKind, ...]:
    """Every registered kind, once each (the built-ins first)."""
    _load_built_ins()
    return tuple(dict.fromkeys(_KINDS.values()))


def find_run_kind(name: Any) -> RunKind | None:
    """The kind named (or aliased) ``name``, else None."""
    _load_built_ins()
    return _KINDS.get(name) if isinstance(name, str) else None


def implicit_run_kind() -> RunKind:
    """The kind of a config that names none."""
    return next(kind for kind in run_kinds() if kind.implicit)


def run_kind_named(name: Any) -> RunKind:
    """The kind ``name`` names; a :class:`ConfigError` listing the kinds otherwise."""
    kind = find_run_kind(name)
    if kind is None:
        named = " or ".join(repr(k.name) for k in run_kinds() if not k.implicit)
        raise ConfigError(f"config key 'kind' is {name!r}: expected {named} or no kind "
                          f"({implicit_run_kind().description})")
    return kind


def kind_of(config: Any) -> RunKind:
    """The kind of a checked config (its ``kind``)."""
    return run_kind_named(config.kind)


def train_config(config: Any, run_dir: Path, data_root: str | None = None, resume: bool = False,
                 progress: bool = True, command: str = "", will_evaluate: bool = True) -> Any:
    """Train a checked config by its kind's ``train`` into ``run_dir`` (``attnmeta train``),
    a :class:`~attnmeta.runs.results.TrainResult`. ``data_root`` replaces ``data.root``
    (refused for a kind that reads no data set); ``will_evaluate``: the test split is
    checked before training, as the evaluation after it will read it."""
    kind = kind_of(config)
    if data_root is not None:
        if not kind.reads_data:
            raise RunError(f"--data-root {data_root}: {kind.description} reads no data set; "
                           "expected no --data-root")
        config.data.root = data_root
    return kind.train(config, Path(run_dir), resume=resume, progress=progress,
                      command=command, will_evaluate=will_evaluate)
