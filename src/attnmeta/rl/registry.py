"""The task families, policies and learners a meta-RL config names, each registered in the
file of what it builds.

``env.name`` names a :data:`TASK_FAMILIES` entry (``rl/navigation.py``, ``rl/bandit.py``),
``policy.kind`` a :data:`POLICIES` entry (``rl/policies.py``), ``learner.name`` an
:data:`RL_LEARNERS` entry (``rl/maml_rl.py``); :mod:`attnmeta.runs.rl` builds a run from
them and :mod:`attnmeta.runs.schema` checks a config against what they declare, never
against a name. The package's ``__init__`` imports every registering file, so importing
this module (which imports ``attnmeta.rl`` first) always sees the built-in entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from attnmeta.rl.task_family import TaskFamily

__all__ = ["TASK_FAMILIES", "POLICIES", "RL_LEARNERS", "PolicyEntry", "RLLearnerEntry",
           "register_task_family", "register_policy", "register_rl_learner"]

# the run's env section -> the task family it describes
TaskFamilyBuild = Callable[[Any], TaskFamily]
TASK_FAMILIES: dict[str, TaskFamilyBuild] = {}


@dataclass(frozen=True)
class PolicyEntry:
    """How ``policy.kind`` builds a policy: ``build(policy_section, family)``;
    ``reads_history``: it acts on the trial's history (what in-context learners adapt by)."""

    build: Callable[[Any, TaskFamily], nn.Module]
    reads_history: bool = False


POLICIES: dict[str, PolicyEntry] = {}


@dataclass(frozen=True)
class RLLearnerEntry:
    """How ``learner.name`` trains a policy (all are a ``PolicyGradientMAML``):
    ``adapts_by_gradient`` takes ``learner.inner_steps`` policy-gradient steps per task
    (``first_order``: without second derivatives); ``in_context`` adapts by attending over
    a trial of ``learner.trial_episodes`` episodes, no step, and is evaluated by trials;
    neither is the pretrained baseline."""

    adapts_by_gradient: bool = False
    first_order: bool = False
    in_context: bool = False


RL_LEARNERS: dict[str, RLLearnerEntry] = {}


def register_task_family(name: str, build: TaskFamilyBuild) -> TaskFamilyBuild:
    """Make ``env.name: <name>`` build ``build(env_section)``."""
    TASK_FAMILIES[name] = build
    return build


def register_policy(name: str, entry: PolicyEntry) -> PolicyEntry:
    """Make ``policy.kind: <name>`` build ``entry.build(policy_section, family)``."""
    POLICIES[name] = entry
    return entry


def register_rl_learner(name: str, entry: RLLearnerEntry) -> RLLearnerEntry:
    """Make ``learner.name: <name>`` (``kind: rl``) train as ``entry`` declares."""
    RL_LEARNERS[name] = entry
    return entry
