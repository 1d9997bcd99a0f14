"""attnmeta.learners.registry: the learners ``learner.name`` names and their options."""

from __future__ import annotations

import dataclasses

import attnmeta.learners  # noqa: F401 (registers the built-in learners)
from attnmeta.learners.registry import LEARNERS, LearnerOptions, learner_options


def test_every_learner_has_an_options_dataclass_of_the_shared_keys():
    options = learner_options()
    assert set(options) == set(LEARNERS) and {"protonet", "maml"} <= set(options)
    shared = {f.name for f in dataclasses.fields(LearnerOptions)}
    for cls in options.values():
        assert issubclass(cls, LearnerOptions)
        assert shared <= {f.name for f in dataclasses.fields(cls)}
