"""attnmeta.runs.kinds: the registry of run kinds."""

from __future__ import annotations

import pytest

from attnmeta.errors import ConfigError
from attnmeta.runs.kinds import RunKind, register_run_kind, run_kind_named, run_kinds


def test_every_built_in_run_kind_is_one_registry_entry():
    assert {kind.name for kind in run_kinds()} >= {"episodic", "rl", "pretrain"}
    assert run_kind_named("supervised") is run_kind_named("episodic")  # the old name
    assert [kind.name for kind in run_kinds() if kind.implicit] == ["episodic"]
    assert run_kind_named("rl").load is None  # meta-RL has no classifier of classes
    assert run_kind_named("pretrain").counts_classes and run_kind_named("episodic").load


def test_an_unknown_kind_is_a_config_error_listing_the_kinds():
    with pytest.raises(ConfigError, match="'rl'") as caught:
        run_kind_named("nonesuch")
    assert "'nonesuch'" in str(caught.value) and "'pretrain'" in str(caught.value)


def test_a_kind_named_twice_or_a_second_implicit_kind_is_refused():
    episodic = run_kind_named("episodic")
    clash = RunKind("rl", dict, "a clash", print, print)
    with pytest.raises(ValueError, match="registered twice"):
        register_run_kind(clash)
    second = RunKind("another-implicit-kind", dict, "a second", print, print, implicit=True)
    with pytest.raises(ValueError, match="implicit"):
        register_run_kind(second)
    assert register_run_kind(episodic) is episodic  # the same kind again is no clash
