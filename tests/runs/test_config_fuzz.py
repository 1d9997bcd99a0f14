"""Property: any value for any config key gives a run that trains, or one ``Error:`` line
naming the problem, never a traceback (hypothesis draws the key and the value).

What each outcome must show: a config refused when read names, first, the key its message is
about (``config key 'train.lr' is nan: ...``): the fuzzed key with the fuzzed value, or,
where a check ties two keys, another real key and the fuzzed key or value. A config accepted
then trains one step whose logged loss is finite, or is refused while the run is built
with one line of the user-error family (a :class:`ConfigError` naming a key). Anything
else (a plain ValueError, a traceback) is a bug."""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attnmeta.errors import AttnmetaError
from attnmeta.runs.config import (ConfigError, ExperimentConfig, RLConfig, apply_overrides,
                                  config_from_dict, config_to_dict, flatten)
from attnmeta.runs.rl import train_rl
from attnmeta.runs.episodic import train_run
from support import make_image_folder, tiny_config

# What a bad run may raise: one line, the CLI prints it as ``Error: ...`` (the family, and
# what the machine refuses: a path that is not there); a plain ValueError would be a bug.
USER_ERRORS = (AttnmetaError, OSError)
# how a refusal of a config starts: from the key it is about
NAMED_KEY = re.compile(r"(?:unknown )?config key '([\w.]+)'")

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
    values["train"].update(steps=2, eval_every=0, log_every=1)  # step 1's loss is logged
    return values


def known_keys(values: dict) -> set[str]:
    """Every key of a config and every section above one (``data.train.n_way``,
    ``data.train``, ``data``)."""
    flat = flatten(values)
    return set(flat) | {key.rsplit(".", i)[0] for key in flat for i in range(key.count("."))}


def as_floats(value):
    """``value`` with its integers as floats: how a float key's message shows an int."""
    if isinstance(value, list):
        return [as_floats(v) for v in value]
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def check_refused(error: ConfigError, key: str, value, keys: set[str]) -> None:
    """A refused config: one line, starting from the key it is about; that is the fuzzed key
    with its value, or (a check of two keys together) another real key, the message then
    naming the fuzzed key or value too."""
    check_one_line(error)
    message = str(error)
    named = NAMED_KEY.match(message)
    assert named, f"{message!r} does not start from a config key"
    if named.group(1) == key:
        assert message.startswith("unknown") or any(
            shown in message for shown in (repr(value), repr(as_floats(value)))), (value, message)
    else:
        assert named.group(1) in keys, (key, message)
        assert key in message or str(value) in message, (key, value, message)


def check_built_refusal(error: BaseException, keys: set[str]) -> None:
    """A config accepted but refused while the run is built: one line of the family, and
    a ConfigError names a key of the config (``data.test: n_way=...``)."""
    check_one_line(error)
    if isinstance(error, ConfigError):
        assert any(re.search(rf"\b{re.escape(k)}\b", str(error)) for k in keys), str(error)


def stop_reading_log(run_dir: Path, rows: list[dict]) -> Callable[[int], None]:
    """An ``on_step_end`` that keeps the run's log rows, then stops it (a run stopped before
    its first checkpoint removes its folder, log included)."""

    def stop_here(step: int) -> None:
        log = run_dir / "log.jsonl"
        if log.is_file():
            rows.extend(json.loads(line) for line in log.read_text().splitlines())
        raise StopAfterOneStep

    return stop_here


def check_first_step(config, rows: list[dict]) -> None:
    """The run's first step was logged (with ``train.log_every`` 1), its metrics (the loss;
    an RL run's returns) finite."""
    first = [{k: v for k, v in row.items() if k not in ("step", "elapsed_s")}
             for row in rows if row.get("step") == 1]
    if config.train.log_every == 1:
        assert first and first[0], rows
    for metrics in first:
        assert all(math.isfinite(v) for v in metrics.values()), metrics


SUPERVISED_KEYS = sorted(flatten(config_to_dict(ExperimentConfig())))
RL_KEYS = sorted(flatten(config_to_dict(RLConfig())))


@settings(max_examples=examples(150), deadline=None, derandomize=DERANDOMIZE,
          suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(SUPERVISED_KEYS), value=VALUES)
def test_any_supervised_key_trains_or_fails_in_one_line(image_root, key, value):
    trains_one_step_or_fails_in_one_line(supervised_base(image_root), key, value, train_run)


def trains_one_step_or_fails_in_one_line(values: dict, key: str, value, train) -> None:
    """``values`` with ``key`` set to ``value``: refused in one line naming the key, or
    ``train`` runs its first step with a finite loss (or is refused in one line while the
    run is built)."""
    keys = known_keys(values)
    try:
        config = config_from_dict(set_key(values, key, value))
    except ConfigError as error:
        check_refused(error, key, value, keys)
        return
    with tempfile.TemporaryDirectory() as out:
        rows: list[dict] = []
        try:
            train(config, Path(out) / "run", progress=False,
                  on_step_end=stop_reading_log(Path(out) / "run", rows))
        except StopAfterOneStep:
            check_first_step(config, rows)
        except USER_ERRORS as error:
            check_built_refusal(error, keys)
        else:
            pytest.fail(f"{key}={value!r}: the run ended before its first step ended")


def rl_base() -> dict:
    return {"kind": "rl", "name": "fuzz", "env": {"name": "bandit", "arms": 3, "horizon": 2},
            "learner": {"episodes_per_task": 2},
            "train": {"steps": 2, "meta_batch": 2, "log_every": 1},
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
