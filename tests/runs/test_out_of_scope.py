"""attnmeta.runs.out_of_scope: the protocol of ``eval --oos`` (score and threshold chosen on
val, measured on test), the threshold a run's evaluation chose, and which queries it rejects."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from attnmeta.errors import RunError
from attnmeta.oos_detection import OUT_OF_SCOPE, QueryScores
from attnmeta.runs.episodic import train_run
from attnmeta.runs.out_of_scope import (below_threshold, chosen_threshold,
                                        evaluate_out_of_scope, threshold_on_val)
from support import make_image_folder, tiny_config


def test_the_threshold_is_chosen_on_val_and_measured_on_test():
    # squared-distance logits: every softmax is ~1, the nearest distance separates on val
    val = QueryScores({"max_softmax": np.ones((1, 4)),
                       "max_logit": np.array([[-2.0, -3.0, -40.0, -55.0]])},
                      np.array([[0, 1, 0, 1]]), np.array([[0, 1, OUT_OF_SCOPE, OUT_OF_SCOPE]]))
    test = QueryScores({"max_softmax": np.ones((1, 4)),
                        "max_logit": np.array([[-1.0, -4.0, -2.0, -60.0]])},
                       np.array([[0, 1, 0, 1]]), np.array([[0, 1, OUT_OF_SCOPE, OUT_OF_SCOPE]]))
    asked = []

    def scored(split: str, count: int) -> QueryScores:
        asked.append((split, count))
        return {"val": val, "test": test}[split]

    score, threshold, on_val, on_test = threshold_on_val(scored, 500, 8)
    assert asked == [("val", 500), ("test", 8)]
    assert (score, threshold) == ("max_logit", -3.0)
    assert on_val["in_scope_accuracy"].tolist() == [1.0] and on_val["oos_recall"].tolist() == [1.0]
    # test: -4 < τ rejects an in-scope query, -2 >= τ accepts an out-of-scope one
    assert (on_test["in_scope_accuracy"].tolist(), on_test["oos_recall"].tolist()) == (
        [0.5], [0.5])


def test_the_newest_readable_choice_of_a_run_is_read_back(tmp_path):
    assert chosen_threshold(tmp_path) is None
    for age, (name, values) in enumerate([
            ("eval_test_oos_5w1s.json", {"score": "max_logit", "threshold": -3.5}),
            ("eval_test_oos_5w5s.json", {"score": "max_softmax", "threshold": 0.25}),
            ("eval_test_oos_3w1s.json", {"score": "energy", "threshold": 1.0}),  # not a score
            ("eval_test_oos_4w1s.json", {"score": "max_logit", "threshold": "nan"})]):
        path = tmp_path / name
        path.write_text(json.dumps(values))
        os.utime(path, (1_000_000 + age, 1_000_000 + age))  # later in the list: newer
    assert chosen_threshold(tmp_path) == {"score": "max_softmax", "threshold": 0.25,
                                          "from": "eval_test_oos_5w5s.json"}


def test_queries_under_the_threshold_are_rejected():
    logits = torch.tensor([[2.0, 0.0], [0.1, 0.0], [1.0, -1.0]])
    assert below_threshold(logits, "max_logit", 1.0) == [False, True, False]


def test_a_run_on_a_data_set_without_out_of_scope_utterances_is_refused(tmp_path):
    root = make_image_folder(tmp_path / "images")
    train_run(tiny_config(root, "protonet", steps=1), tmp_path / "run", progress=False,
              will_evaluate=False)
    with pytest.raises(RunError, match=r"^--oos needs out-of-scope utterances: "
                                       r"data.dataset='image_folder' has none, expected one of "):
        evaluate_out_of_scope(tmp_path / "run", save=False)
