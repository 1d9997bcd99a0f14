"""The scalar fields of ``attnmeta serve``'s requests, read by one typed reader each: a
value that is not exactly what the API documents is refused, never coerced. Each refusal
is one :class:`InputError` line (HTTP 400) naming the field as the API names it, what was
sent and what is expected: ``top_k is 1.9: expected a whole number from 1 to 3 (the
number of fitted classes)``.

A JSON body's values keep their JSON types: a number must be a JSON number (not ``true``,
not the string ``"3"``), a yes/no ``true`` or ``false``. A multipart form sends text, so
there a whole number is written in digits (``"3"``), a probability as a decimal
(``"0.25"``, ``"1e-3"``) and a yes/no as ``true``, ``false``, ``1`` or ``0``. An absent
field (or JSON ``null``, or an empty form value) takes its default. A form field given
twice, or sent as a file, is refused; so is a field the endpoint does not read (a typo
such as ``topk`` would otherwise be ignored without a word).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Iterable, Mapping

from attnmeta.fewshot.inputs import InputError

__all__ = ["RequestFields", "MAX_STEPS"]

MAX_STEPS = 10_000  # inner steps of one adapt: a MAML / Reptile run's own are 5 to 100
_DIGITS = re.compile(r"-?[0-9]{1,30}")
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,3})?")
_ABSENT = object()


def shown(value: Any) -> str:
    """``value`` as it was sent, on one short line: JSON's spelling (``true``, ``"3"``,
    ``1e+300``); a list or an object by its kind."""
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= 40 else text[:37] + "..."


class RequestFields:
    """The fields of one request body: ``values`` (a field's value; for a form, its last
    text value), ``lists`` (a form's every value of each field, files included; empty
    for JSON) and ``form`` (multipart: values are text). ``allowed``: the fields the
    endpoint reads; any other is refused at once (``where``: the endpoint, for the
    message)."""

    def __init__(self, values: Mapping[str, Any], lists: Mapping[str, list], form: bool,
                 allowed: Iterable[str], where: str) -> None:
        self.values, self.lists, self.form = values, lists, form
        allowed = list(allowed)
        for name in (lists if form else values):
            if name not in allowed:
                raise InputError(f"{shown(name)} is not a field of {where}: expected "
                                 f"{', '.join(allowed)}")

    def _raw(self, name: str) -> Any:
        """The field's one value, or ``_ABSENT``."""
        if self.form:
            sent = self.lists.get(name, [])
            if len(sent) > 1:
                raise InputError(f"{name} is sent {len(sent)} times: expected one value")
            if sent and not isinstance(sent[0], str):
                raise InputError(f"{name} is a file: expected a form value")
        value = self.values.get(name)
        return _ABSENT if value is None or (self.form and value == "") else value

    def whole(self, name: str, low: int, high: int, bound: str = "") -> int | None:
        """A whole number from ``low`` to ``high`` (``bound``: what ``high`` is, for the
        message); None if absent. Refused: true / false, a fraction (1.9), a JSON string,
        anything out of range (1e300)."""
        value = self._raw(name)
        if value is _ABSENT:
            return None
        number: int | None = None
        if self.form:
            if isinstance(value, str) and _DIGITS.fullmatch(value):
                number = int(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, float) and value.is_integer():  # JSON 2.0, 1e300
            number = int(value)
        if number is None or not low <= number <= high:
            hint = " (a JSON number, not a string)" if isinstance(value, str) and not self.form \
                else ""
            raise InputError(f"{name} is {shown(value)}: expected a whole number from {low} "
                             f"to {high}{f' ({bound})' if bound else ''}{hint}")
        return number

    def probability(self, name: str) -> float | None:
        """A number from 0 to 1; None if absent. Refused: true / false, a JSON string,
        text that is not a decimal number, anything outside [0, 1]."""
        value = self._raw(name)
        if value is _ABSENT:
            return None
        number: float | None = None
        if self.form:
            if isinstance(value, str) and _DECIMAL.fullmatch(value):
                number = float(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        if number is None or not math.isfinite(number) or not 0.0 <= number <= 1.0:
            hint = " (a JSON number, not a string)" if isinstance(value, str) and not self.form \
                else ""
            raise InputError(f"{name} is {shown(value)}: expected a probability from 0 to "
                             f"1{hint}")
        return number

    def yes_no(self, name: str, default: bool = False) -> bool:
        """JSON ``true`` / ``false``; a form's ``true``, ``false``, ``1`` or ``0``;
        ``default`` if absent. Anything else (``maybe``, ``2``, ``"true"`` in JSON, ``on``)
        is refused."""
        value = self._raw(name)
        if value is _ABSENT:
            return default
        if self.form and value in ("true", "false", "1", "0"):
            return value in ("true", "1")
        if not self.form and isinstance(value, bool):
            return value
        expected = "true, false, 1 or 0" if self.form else "true or false (JSON booleans)"
        raise InputError(f"{name} is {shown(value)}: expected {expected}")
