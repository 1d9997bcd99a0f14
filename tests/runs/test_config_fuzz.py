"""Property: any value for any config key gives a run that trains, or one ``Error:`` line
naming the problem, never a traceback (hypothesis draws the key and the value)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attnmeta.runs.config import (ConfigError, ExperimentConfig, RLConfig, apply_overrides,
                                  config_from_dict, config_to_dict, flatten)
from attnmeta.runs.rl import train_rl
from attnmeta.runs.supervised import train_run
from support import make_image_folder, tiny_config

# What a bad run may raise: one line, the CLI prints it as ``Error: ...``.
USER_ERRORS = (ValueError, OSError, FloatingPointError)

VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-2, 6), st.integers(10**7, 10**15),
    st.integers(-(10**15), -3), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "abc", "1e-3", "../x", "adam", "loop", "vit", "maml", "test", "rl"]),
    st.lists(st.integers(-2, 4), max_size=3), st.lists(st.text(max_size=3), max_size=2),
    st.dictionaries(st.sampled_from(["a", "n_way"]), st.integers(0, 3), max_size=2),
)


# CI draws the same examples every run; FUZZ_EXAMPLES=3000 searches afresh, many more.
DERANDOMIZE = "FUZZ_EXAMPLES" not in os.environ


def examples(default: int) -> int:
    return int(os.environ.get("FUZZ_EXAMPLES", default))


class StopAfterOneStep(Exception):
    pass


def stop(step: int) -> None:
    raise StopAfterOneStep


def set_key(values: dict, dotted: str, value) -> dict:
    node = values
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = value
    return values


def check_one_line(error: BaseException) -> None:
    assert isinstance(error, USER_ERRORS), repr(error)
    assert "\n" not in str(error).strip() and str(error).strip(), repr(error)


@pytest.fixture(scope="module")
def image_root(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("images"))


def supervised_base(root: Path) -> dict:
    values = config_to_dict(tiny_config(root, "maml"))
    values["train"].update(steps=2, eval_every=0)
    return values


SUPERVISED_KEYS = sorted(flatten(config_to_dict(ExperimentConfig())))
RL_KEYS = sorted(flatten(config_to_dict(RLConfig())))


@settings(max_examples=examples(150), deadline=None, derandomize=DERANDOMIZE,
          suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(SUPERVISED_KEYS), value=VALUES)
def test_any_supervised_key_trains_or_fails_in_one_line(image_root, key, value):
    trains_one_step_or_fails_in_one_line(supervised_base(image_root), key, value, train_run)


def trains_one_step_or_fails_in_one_line(values: dict, key: str, value, train) -> None:
    """``values`` with ``key`` set to ``value``: refused in one line naming the key, or
    ``train`` runs its first step (or stops there with a one-line error)."""
    try:
        config = config_from_dict(set_key(values, key, value))
    except ConfigError as error:
        check_one_line(error)
        assert key.split(".")[-1] in str(error) or "config" in str(error)
        return
    with tempfile.TemporaryDirectory() as out:
        try:
            train(config, Path(out) / "run", progress=False, on_step_end=stop)
        except StopAfterOneStep:
            pass
        except USER_ERRORS as error:
            check_one_line(error)


def rl_base() -> dict:
    return {"kind": "rl", "name": "fuzz", "env": {"name": "bandit", "arms": 3, "horizon": 2},
            "learner": {"episodes_per_task": 2}, "train": {"steps": 2, "meta_batch": 2},
            "eval": {"tasks": 2, "episodes_per_task": 2}}


@settings(max_examples=examples(80), deadline=None, derandomize=DERANDOMIZE,
          suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(RL_KEYS), value=VALUES)
def test_any_rl_key_trains_or_fails_in_one_line(key, value):
    values = config_to_dict(config_from_dict(rl_base()))
    trains_one_step_or_fails_in_one_line(values, key, value, train_rl)


@settings(max_examples=examples(100), deadline=None, derandomize=DERANDOMIZE)
@given(override=st.text(max_size=30))
def test_any_override_text_is_parsed_or_refused_in_one_line(override):
    try:
        config_from_dict(apply_overrides(config_to_dict(ExperimentConfig()), [override]))
    except ConfigError as error:
        check_one_line(error)
