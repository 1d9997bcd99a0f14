"""attnmeta.rl.registry: the task families, policies and RL learners a meta-RL config names,
each registered beside what it builds, with what it declares."""

from __future__ import annotations

import attnmeta.runs.rl  # noqa: F401  (reads the registries: the built-in entries are loaded)
from attnmeta.rl.registry import POLICIES, RL_LEARNERS, TASK_FAMILIES


def test_the_built_in_entries_and_what_they_declare():
    assert {"navigation2d", "bandit"} <= set(TASK_FAMILIES)
    assert {"mlp", "attention"} <= set(POLICIES)
    assert POLICIES["attention"].reads_history and not POLICIES["mlp"].reads_history
    maml, fomaml = RL_LEARNERS["maml"], RL_LEARNERS["fomaml"]
    assert maml.adapts_by_gradient and fomaml.adapts_by_gradient
    assert fomaml.first_order and not maml.first_order
    assert RL_LEARNERS["incontext"].in_context and not RL_LEARNERS["incontext"].adapts_by_gradient
