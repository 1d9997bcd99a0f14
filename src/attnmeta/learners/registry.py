"""The learners a config names (``learner.name``), each registered in its own file.

A learner's file ends with one line, ``register_learner("name", Class, build)``; the
package's ``__init__`` imports every learner file, so importing this module (which imports
``attnmeta.learners`` first) always sees the built-in entries. :mod:`attnmeta.runs.build`
reads :data:`LEARNERS`; what a learner needs from the model (a head of ``n_way`` outputs,
the feature width) is read from its class's declarations and the backbone's
(:mod:`attnmeta.models.capabilities`), never from its name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from torch import nn

from attnmeta.errors import ConfigError
from attnmeta.learners.base import MetaLearner
from attnmeta.models.capabilities import has_features
from attnmeta.settings import setting

__all__ = ["Backbone", "LearnerOptions", "LearnerEntry", "LEARNERS", "register_learner",
           "learner_options"]


@dataclass
class LearnerOptions:
    """The ``learner`` section's keys every learner has; a learner's own keys are a
    subclass of it in the learner's file, named by its entry (``register_learner(...,
    options=...)``). ``strategy`` and ``head_init`` accept every value some learner takes;
    the values one learner takes are its class's ``strategies`` / ``head_inits``."""

    name: str = "protonet"                        # a name of attnmeta.runs.build.LEARNERS
    strategy: str = setting("loop", choices=("loop", "vmap", "compiled"))  # compiled: maml
    # maml: each task's head starts at the meta-learned weights or at the support
    # prototypes (Proto-MAML, Triantafillou et al. ICLR 2020)
    head_init: str = setting("meta", choices=("meta", "prototypes"))

    def problems(self, config: Any) -> list[tuple[str, Any, str]]:
        """Rules between this section's keys and the run's ``config`` (its ``model``,
        ``data``), as ``(key, value, "expected ...")`` for each one broken."""
        return []


@dataclass(frozen=True)
class Backbone:
    """What a learner is built around: the ``model`` (features, or a head of ``n_way``
    outputs when the learner ``needs_head``) and the run's model section ``config``
    (``depth``, ``heads``, ``norm``: what some learners size themselves by)."""

    model: nn.Module
    config: Any
    # where the model returns spatial tokens flattened (a learner that reads_spatial_tokens)
    token_grid: tuple[int, int] | None = None  # (H, W) of the token map
    token_dim: int | None = None               # the width D of one token

    @property
    def feature_dim(self) -> int | None:
        """The width of the model's features where its class declares ``features``."""
        return self.model.feature_dim if has_features(self.model) else None

    def tokens(self, learner: str) -> tuple[tuple[int, int], int]:
        """``(token_grid, token_dim)``, or a ConfigError naming ``learner``, which reads
        spatial tokens (set by :func:`attnmeta.runs.build.build_learner`)."""
        if self.token_grid is None or self.token_dim is None:
            raise ConfigError(f"config key 'learner.name' is {learner!r}, which reads "
                              "spatial tokens: expected the backbone wrapped in "
                              "attnmeta.models.spatial.SpatialTokens (a backbone whose class "
                              "declares 'spatial_tokens')")
        return self.token_grid, self.token_dim

    def width(self, learner: str) -> int:
        """:attr:`feature_dim`, or a ConfigError naming ``learner``, which needs it."""
        if (width := self.feature_dim) is None:
            raise ConfigError(f"config key 'learner.name' is {learner!r}, which needs the "
                              f"backbone's feature width: expected a backbone whose class "
                              f"declares 'features' ({type(self.model).__name__} does not; "
                              "see attnmeta.models.capabilities.declares)")
        return width


# (the run's learner section, the backbone) -> the learner
LearnerBuild = Callable[[Any, Backbone], MetaLearner]


@dataclass(frozen=True)
class LearnerEntry:
    """A learner class (its ClassVars declare what it needs: ``needs_head``,
    ``strategies``, ``head_inits``) and how a config builds it."""

    cls: type[MetaLearner]
    build: LearnerBuild
    options: type[LearnerOptions] = field(default=LearnerOptions)  # its learner section


LEARNERS: dict[str, LearnerEntry] = {}


def register_learner(name: str, cls: type[MetaLearner], build: LearnerBuild,
                     options: type[LearnerOptions] = LearnerOptions) -> LearnerEntry:
    """Make ``learner.name: <name>`` build ``build(learner_section, backbone)``, a ``cls``;
    the section's keys are ``options``'s fields (the shared ones when it has no own)."""
    LEARNERS[name] = entry = LearnerEntry(cls, build, options)
    return entry


def learner_options() -> Mapping[str, type[LearnerOptions]]:
    """Learner name -> the dataclass of its config section (what ``learner.name`` picks)."""
    return {name: entry.options for name, entry in LEARNERS.items()}
