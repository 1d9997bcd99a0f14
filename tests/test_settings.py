"""attnmeta.settings: a config key's range (Limits), its default (setting) and a section one
of its keys chooses (Variants)."""

from __future__ import annotations

import dataclasses
import re

import pytest

from attnmeta.errors import ConfigError
from attnmeta.settings import PROBABILITY, Limits, Variants, setting


def test_limits_name_the_range_a_value_is_outside_and_accept_one_inside():
    probability = Limits(**PROBABILITY)
    assert probability.problem(0.0) is None and probability.problem(0.5) is None
    assert probability.problem(None) is None  # None passes where the default is None
    assert probability.problem(1.0) == "expected a value >= 0 and < 1"
    assert probability.problem(float("nan")) == "expected a finite number"
    assert Limits(choices=("adam", "sgd")).problem("rmsprop") == "expected one of 'adam', 'sgd'"
    assert Limits(each=Limits(above=0)).problem([1, 0]) == "expected a value > 0 for every element"
    name = Limits(pattern=re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*"))
    assert name.problem("run-1") is None and name.problem("../up").startswith("expected a plain")


def test_setting_records_its_limits_and_variants_choose_a_dataclass():
    @dataclasses.dataclass
    class Adam:
        name: str = "adam"
        lr: float = setting(0.001, above=0)

    @dataclasses.dataclass
    class Sgd:
        name: str = "sgd"
        momentum: float = setting(0.9, **PROBABILITY)

    (lr,) = [f for f in dataclasses.fields(Adam) if f.name == "lr"]
    assert lr.metadata["limits"] == Limits(above=0) and lr.default == 0.001
    variants = Variants("name", lambda: {"adam": Adam, "sgd": Sgd}, "train.optimizer")
    assert variants.choose({}, Adam()) is Adam and variants.choose({"name": "sgd"}, Adam()) is Sgd
    assert variants.known_keys() == {"name", "lr", "momentum"}
    with pytest.raises(ConfigError, match=r"'train.optimizer.name' is 'lion': expected one of "
                                          r"'adam', 'sgd'"):
        variants.choose({"name": "lion"}, Adam())
