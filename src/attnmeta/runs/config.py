"""Reading a run's config: one YAML reader for every run kind, ``key=value`` overrides, and
the checks of every key's type and range (:mod:`attnmeta.runs.schema`) before any work.

``attnmeta train CONFIG train.steps=100 data.root=/data`` overrides any key with dotted
names; values are parsed as YAML (``1e-3``, ``true``, ``[1, 2]``). A file's top-level
``kind:`` names its run kind (:mod:`attnmeta.runs.kinds`: ``rl``, ``pretrain``, ...), whose
schema checks it; a file without one is an episodic run. Every problem
is a one-line :class:`ConfigError` naming the file or key, the value, and what was
expected: a file that is not UTF-8, not YAML, empty, not a mapping, or with a key written
twice; an unknown key; a wrong type; a value out of range.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from attnmeta.errors import ConfigError
from attnmeta.runs.kinds import RunKind, implicit_run_kind, run_kind_named
from attnmeta.runs.schema import (DataConfig, EpisodeConfig, EvalConfig, ExperimentConfig,
                                  LearnerConfig, ModelConfig, PretrainConfig, RLConfig,
                                  TrainConfig)

__all__ = ["ConfigError", "RunConfig", "EpisodeConfig", "DataConfig", "ModelConfig",
           "LearnerConfig", "TrainConfig", "EvalConfig", "ExperimentConfig", "RLConfig",
           "PretrainConfig",
           "read_yaml", "config_kind", "load_config", "apply_overrides", "config_from_dict",
           "config_to_dict", "build_section", "flatten"]

RunConfig = ExperimentConfig | RLConfig | PretrainConfig  # the built-in kinds' schemas


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a mapping key written twice (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(f"key {key!r} appears twice (line {key_node.start_mark.line + 1})"
                                  ": expected each key once")
            seen.add(key)
        return super().construct_mapping(node, deep)


def _parse_yaml(text: str, where: str) -> Any:
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None
    except yaml.YAMLError as error:
        detail = " ".join(str(error).split())
        raise ConfigError(f"{where} is not valid YAML ({detail})") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML config file."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise ConfigError(f"config file {path} {what}: expected a YAML file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {error.start}): "
                          "expected a YAML file") from None
    except OSError as error:
        raise ConfigError(f"config file {path} cannot be read ({error.strerror})") from None
    values = _parse_yaml(text, f"config file {path}")
    if values is None:
        raise ConfigError(f"config file {path} is empty: expected a mapping such as "
                          "'name: my_run' with data, model, learner and train sections")
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} holds a {type(values).__name__}: expected a "
                          "mapping of config keys")
    return values


def config_kind(values: Mapping[str, Any]) -> RunKind:
    """The run kind a config's top-level ``kind:`` names (or aliases), else the implicit
    one (episodic)."""
    return run_kind_named(values["kind"]) if "kind" in values else implicit_run_kind()


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def build_section(cls: type, values: Any, path: str, saved: bool = False,
                  whose: str = "") -> Any:
    """A config dataclass ``cls`` from a nested mapping, refusing unknown keys, wrong types
    and values out of each key's declared range (``path``: the section's dotted name;
    ``whose``: what chose ``cls``, for the unknown-key message). A section with
    :class:`~attnmeta.settings.Variants` is built as the dataclass its values name; with
    ``saved`` (a record attnmeta wrote, never a user's file) the keys another variant
    declares are dropped: older records hold every learner's keys in one flat section."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"config section '{path or 'top level'}' is {values!r}: expected "
                          "a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    defaults = cls()
    kwargs = {}
    for key, value in values.items():
        dotted = f"{path}.{key}" if path else str(key)
        if key not in fields:
            raise ConfigError(f"unknown config key {dotted!r}: expected one of "
                              f"{sorted(fields)}{whose}")
        default = getattr(defaults, key)
        if dataclasses.is_dataclass(default):
            kwargs[key] = _subsection(fields[key], default, value, dotted, saved)
            continue
        value = _check_type(dotted, value, hints[key], default)
        limits = fields[key].metadata.get("limits")
        if limits is not None and (expected := limits.problem(value)):
            raise ConfigError(f"config key '{dotted}' is {value!r}: {expected}")
        kwargs[key] = value
    return cls(**kwargs)


def _subsection(field: dataclasses.Field, default: Any, values: Any, path: str,
                saved: bool) -> Any:
    """The section ``path`` as its default's dataclass, or the one its variants choose."""
    variants = field.metadata.get("variants")
    if variants is None or not isinstance(values, Mapping):
        return build_section(type(default), values, path, saved)
    cls = variants.choose(values, default)
    if saved:
        own = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in values.items() if k in own or k not in variants.known_keys()}
    name = values.get(variants.key, getattr(default, variants.key))
    return build_section(cls, values, path, saved,
                         f" (the keys of {path}.{variants.key} {name!r})")


def _check_type(dotted: str, value: Any, hint: Any, default: Any) -> Any:
    """``value`` as the key's declared type ``hint`` (ints pass as floats), or a ConfigError."""
    converted = _as_type(value, hint)
    if converted is _WRONG:
        example = "" if default is None else f" such as {default!r}"
        raise ConfigError(f"config key '{dotted}' is {value!r}: expected {_type_name(hint)}"
                          f"{example}")
    return converted


_WRONG = object()


def _as_type(value: Any, hint: Any) -> Any:
    """``value`` converted to ``hint`` (``int``, ``float``, ``str``, ``bool``, ``list[...]``,
    ``X | None``), or :data:`_WRONG`."""
    args = typing.get_args(hint)
    if type(None) in args:  # an optional key
        if value is None:
            return None
        (hint,) = [a for a in args if a is not type(None)]
    if typing.get_origin(hint) is list:
        if not isinstance(value, list):
            return _WRONG
        items = [_as_type(item, typing.get_args(hint)[0]) for item in value]
        return _WRONG if any(item is _WRONG for item in items) else items
    if hint is bool or isinstance(value, bool):  # YAML's true is no number, 1 no boolean
        return value if hint is bool and isinstance(value, bool) else _WRONG
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                return _WRONG
        return float(value) if isinstance(value, (int, float)) else _WRONG
    return value if isinstance(value, hint) else _WRONG


def _type_name(hint: Any) -> str:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is list:
        return f"a list of {_type_name(typing.get_args(hint)[0]).split(' ', 1)[1]}s"
    if args:
        return f"{_type_name(args[0])} or null"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(hint, f"a {getattr(hint, '__name__', hint)}")


def config_from_dict(values: Mapping[str, Any], saved: bool = False) -> RunConfig:
    """The checked config of its kind (see :func:`config_kind`); ``saved``: ``values`` are
    a record attnmeta wrote (a checkpoint's, a run or model folder's), whose learner section
    may hold other learners' keys (see :func:`build_section`)."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"config is {values!r}: expected a mapping of config keys")
    schema = config_kind(values).schema
    if "kind" not in {f.name for f in dataclasses.fields(schema)}:
        # the implicit kind's schema has no kind key: `kind: episodic` (or its old name
        # `supervised`) says what no kind says
        values = {key: value for key, value in values.items() if key != "kind"}
    config = build_section(schema, values, "", saved)
    for key, value, expected in config.cross_problems():
        raise ConfigError(f"config key '{key}' is {value!r}: expected {expected}")
    return config


def config_to_dict(config: RunConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def apply_overrides(values: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Set ``a.b.c=value`` entries (value parsed as YAML) in a nested dict, in place."""
    for override in overrides:
        key, sep, raw = override.partition("=")
        if not sep or not key or "" in key.split("."):
            raise ConfigError(f"override {override!r}: expected key=value, e.g. train.steps=100")
        node = values
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {override!r}: '{part}' is not a section")
        node[leaf] = _parse_yaml(raw, f"override {override!r}")
    return values


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a YAML config, apply ``key=value`` overrides, check every key."""
    return config_from_dict(apply_overrides(read_yaml(path), overrides))
