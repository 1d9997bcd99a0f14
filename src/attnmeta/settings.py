"""How a config key declares its default and the values it accepts, for every layer.

A config section is a dataclass whose fields are written with :func:`setting`
(``setting(0.4, above=0.0)``, ``setting("loop", choices=("loop", "vmap"))``, or
``choices=lambda: tuple(REGISTRY)`` for a registry's names as they are when a config is
checked); the :class:`Limits` in each field's metadata is what :mod:`attnmeta.runs.config`
checks a value against, and what the config reference prints. It lives below the run layer so that a
learner's own options (``learners/<name>.py``) are declared the same way as the run's
sections (:mod:`attnmeta.runs.schema` re-exports it). A section whose keys depend on one of
its values (the learner section: ``learner.name`` picks the learner's options) declares its
:class:`Variants`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from attnmeta.errors import ConfigError

__all__ = ["Limits", "setting", "Variants", "PROBABILITY"]


@dataclass(frozen=True)
class Limits:
    """The values a key accepts; ``None`` passes where the default is ``None``."""

    at_least: float | None = None      # value >= at_least
    above: float | None = None         # value > above
    at_most: float | None = None       # value <= at_most
    below: float | None = None         # value < below
    # the values, or a zero-argument callable returning them when a value is checked (the
    # names of a registry, so that entries registered after import are accepted)
    choices: tuple[Any, ...] | Callable[[], Iterable[Any]] | None = None
    pattern: re.Pattern | None = None  # strings: the whole value matches
    each: "Limits | None" = None       # lists: every element

    def allowed(self) -> tuple[Any, ...] | None:
        """The choices as they are now (a callable's are read at each call)."""
        return tuple(self.choices()) if callable(self.choices) else self.choices

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` ("expected ..."), or None when it is accepted."""
        if value is None:
            return None
        if isinstance(value, list):
            for item in value:
                if self.each is not None and (wrong := self.each.problem(item)):
                    return f"{wrong} for every element"
            return None
        if (choices := self.allowed()) is not None and value not in choices:
            return "expected one of " + ", ".join(repr(c) for c in choices)
        if self.pattern is not None and not self.pattern.fullmatch(str(value)):
            return ("expected a plain name (letters, digits, '.', '_', '-'; no path "
                    "separators, no leading '.')")
        if isinstance(value, float) and not math.isfinite(value):
            return "expected a finite number"
        bounds = ((self.at_least, lambda v, b: v >= b, ">="), (self.above, lambda v, b: v > b, ">"),
                  (self.at_most, lambda v, b: v <= b, "<="), (self.below, lambda v, b: v < b, "<"))
        for bound, holds, sign in bounds:
            if bound is not None and not holds(value, bound):
                parts = [f"{s} {b:g}" for b, _, s in bounds if b is not None]
                return "expected a value " + " and ".join(parts)
        return None


@dataclass(frozen=True)
class Variants:
    """A section whose dataclass one of its keys chooses: ``key``'s value names an entry of
    ``classes()`` (read when a config is, so entries registered later count); ``where`` is
    the section's dotted name, for the message about a name no entry has."""

    key: str
    classes: Callable[[], Mapping[str, type]]
    where: str

    def choose(self, values: Mapping[str, Any], default: Any) -> type:
        """The dataclass ``values`` name (``default``'s ``key`` when they name none)."""
        name = values.get(self.key, getattr(default, self.key))
        classes = self.classes()
        if not isinstance(name, str) or name not in classes:
            raise ConfigError(f"config key '{self.where}.{self.key}' is {name!r}: expected one "
                              f"of {', '.join(map(repr, classes))}")
        return classes[name]

    def known_keys(self) -> set[str]:
        """Every key some variant declares (a saved record may hold another variant's)."""
        return {f.name for cls in self.classes().values() for f in dataclasses.fields(cls)}


def setting(default: Any = dataclasses.MISSING, *, factory: Callable[[], Any] | None = None,
            variants: Variants | None = None, **limits: Any) -> Any:
    """A config key: its default (or ``factory`` for lists and sections) and its
    :class:`Limits` (``at_least=1``, ``choices=("adam", "sgd")``, ...); a section whose
    dataclass one of its keys picks declares its ``variants``."""
    metadata: dict[str, Any] = {"limits": Limits(**limits)} if limits else {}
    if variants is not None:
        metadata["variants"] = variants
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


PROBABILITY = {"at_least": 0.0, "below": 1.0}
