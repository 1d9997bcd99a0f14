"""attnmeta.fewshot.records: the JSON record of one prediction and the ``top_k`` check."""

from __future__ import annotations

import math

import pytest
import torch

from attnmeta.fewshot import InputError
from attnmeta.fewshot.records import DEFAULT_TOP_K, checked_top_k, prediction_records


class _Model:
    """What prediction_records reads of a FewShotClassifier: class names and rejection
    (here: rows whose top probability is under ``reject_below``)."""

    def __init__(self, class_names):
        self.class_names = list(class_names)

    def rejected(self, logits, reject_below=None):
        if reject_below is None:
            return [False] * len(logits)
        return (torch.softmax(logits.float(), -1).max(-1).values < reject_below).tolist()


def test_top_k_is_named_as_the_caller_names_it():
    with pytest.raises(InputError, match=r"^--top-k 5: expected 1 to 2, the number of fitted"):
        checked_top_k(["a", "b"], 5)
    with pytest.raises(InputError, match=r"^top_k is 5: expected 1 to 2, the number of fitted"):
        checked_top_k(["a", "b"], 5, "top_k")
    assert checked_top_k(["a", "b"], None, "top_k") == 2


def test_default_top_k_is_capped_by_the_classes_and_zero_is_refused():
    assert checked_top_k(list("abcdef"), None) == DEFAULT_TOP_K == 3
    assert checked_top_k(list("abcdef"), 6) == 6
    with pytest.raises(InputError, match=r"^--top-k 0: expected 1 to 6"):
        checked_top_k(list("abcdef"), 0)


def test_records_hold_the_softmax_of_the_logits_sorted_and_rounded():
    logits = torch.log(torch.tensor([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]]))
    records = prediction_records(_Model(["cat", "dog", "cow"]), logits, ["q1", "q2"], top_k=2)
    assert records == [
        {"input": "q1", "label": "dog", "probability": 0.6,
         "top_k": [["dog", 0.6], ["cow", 0.3]]},
        {"input": "q2", "label": "cat", "probability": 0.5,
         "top_k": [["cat", 0.5], ["cow", 0.3]]},
    ]
    for record in records:  # six decimals at most
        assert all(math.isclose(p, round(p, 6)) for _, p in record["top_k"])


def test_a_rejected_query_has_no_label_but_keeps_its_probability():
    logits = torch.log(torch.tensor([[0.4, 0.35, 0.25], [0.9, 0.05, 0.05]]))
    records = prediction_records(_Model("abc"), logits, ["low", "high"], reject_below=0.5)
    assert [r["label"] for r in records] == [None, "a"]
    assert records[0]["probability"] == pytest.approx(0.4)
    assert len(records[0]["top_k"]) == 3


def test_too_large_a_top_k_names_the_api_field():
    with pytest.raises(InputError, match=r"^top_k is 4: expected 1 to 3"):
        prediction_records(_Model("abc"), torch.zeros(1, 3), ["q"], top_k=4, top_k_name="top_k")
