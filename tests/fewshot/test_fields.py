"""attnmeta.fewshot.fields: the typed readers of serve's request fields, called directly
(the HTTP scenarios are in test_serve_fields.py)."""

from __future__ import annotations

import pytest

from attnmeta.fewshot import InputError
from attnmeta.fewshot.fields import MAX_STEPS, RequestFields, shown


def form(**values) -> RequestFields:
    lists = {name: (value if isinstance(value, list) else [value])
             for name, value in values.items()}
    last = {name: sent[-1] for name, sent in lists.items()}
    return RequestFields(last, lists, form=True, allowed=["steps", "top_k", "explain", "p"],
                         where="/api/predict")


def body(**values) -> RequestFields:
    return RequestFields(values, {}, form=False, allowed=["steps", "top_k", "explain", "p"],
                         where="/api/predict")


def test_shown_spells_values_as_json_on_one_short_line():
    assert shown(True) == "true" and shown("3") == '"3"' and shown(1e300) == "1e+300"
    assert shown([1]) == "a list" and shown({"a": 1}) == "an object"
    long = shown("x" * 100)
    assert len(long) == 40 and long.endswith("...")


def test_a_field_the_endpoint_does_not_read_is_refused_by_name():
    with pytest.raises(InputError, match=r'^"topk" is not a field of /api/predict: expected '
                                         r"steps, top_k, explain, p$"):
        body(topk=2)
    with pytest.raises(InputError, match="is not a field"):
        form(topk="2")


@pytest.mark.parametrize("value,expected", [("3", 3), ("0", 0), (str(MAX_STEPS), MAX_STEPS),
                                            ("", None)])
def test_form_whole_numbers_are_digits_in_range(value, expected):
    assert form(steps=value).whole("steps", 0, MAX_STEPS) == expected


@pytest.mark.parametrize("value", ["2.5", "true", "-1", " 2", "+2", "1e3", str(MAX_STEPS + 1)])
def test_form_whole_numbers_refuse_anything_else(value):
    with pytest.raises(InputError, match=rf"^steps is .*: expected a whole number from 0 to "
                                         rf"{MAX_STEPS}$"):
        form(steps=value).whole("steps", 0, MAX_STEPS)


def test_json_whole_numbers_keep_their_json_type():
    assert body(top_k=2).whole("top_k", 1, 3) == 2
    assert body(top_k=2.0).whole("top_k", 1, 3) == 2  # JSON cannot tell 2 from 2.0
    assert body(top_k=None).whole("top_k", 1, 3) is None
    with pytest.raises(InputError, match=r'^top_k is "2": expected a whole number from 1 to 3 '
                                         r"\(fitted classes\) \(a JSON number, not a string\)$"):
        body(top_k="2").whole("top_k", 1, 3, "fitted classes")
    for value in (True, 1.9, 1e300, 0, [2]):
        with pytest.raises(InputError, match="expected a whole number"):
            body(top_k=value).whole("top_k", 1, 3)


def test_probabilities_are_finite_and_in_the_unit_interval():
    assert form(p="0.25").probability("p") == 0.25
    assert form(p="1e-3").probability("p") == 0.001
    assert form(p=".5").probability("p") == 0.5
    assert body(p=1).probability("p") == 1.0 and body(p=0).probability("p") == 0.0
    assert body().probability("p") is None
    for value in ("nan", "inf", "1e400", "-0.1", "0_5", "1.5"):
        with pytest.raises(InputError, match=r"expected a probability from 0 to 1$"):
            form(p=value).probability("p")
    for value in (True, "0.5", 1.5, float("nan")):
        with pytest.raises(InputError, match="expected a probability from 0 to 1"):
            body(p=value).probability("p")


def test_yes_no_reads_booleans_and_the_four_form_spellings():
    assert [form(explain=v).yes_no("explain") for v in ("true", "1", "false", "0")] == \
        [True, True, False, False]
    assert body(explain=True).yes_no("explain") is True
    assert body().yes_no("explain", default=True) is True
    assert form(explain="").yes_no("explain", default=True) is True
    with pytest.raises(InputError, match=r"^explain is \"on\": expected true, false, 1 or 0$"):
        form(explain="on").yes_no("explain")
    with pytest.raises(InputError, match=r"^explain is \"true\": expected true or false "
                                         r"\(JSON booleans\)$"):
        body(explain="true").yes_no("explain")


def test_a_form_field_sent_twice_or_as_a_file_is_refused():
    with pytest.raises(InputError, match=r"^steps is sent 2 times: expected one value$"):
        form(steps=["1", "2"]).whole("steps", 0, 9)
    with pytest.raises(InputError, match=r"^steps is a file: expected a form value$"):
        RequestFields({"steps": "1"}, {"steps": [object()]}, True, ["steps"],
                      "x").whole("steps", 0, 9)
