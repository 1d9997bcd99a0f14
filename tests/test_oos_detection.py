"""Out-of-scope detection: threshold choice, metrics and episodes, on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnmeta.oos_detection import (OUT_OF_SCOPE, OutOfScopeEpisodes, choose_threshold,
                                   max_softmax_scores, out_of_scope_metrics)
from attnmeta.tasks import FewShotEpisodes

# one episode: 4 in-scope queries (3 classified right, one wrong) and 2 out-of-scope ones
SCORES = np.array([[0.9, 0.8, 0.7, 0.4, 0.3, 0.5]])
PREDICTIONS = np.array([[0, 1, 2, 0, 1, 2]])
LABELS = np.array([[0, 1, 2, 1, OUT_OF_SCOPE, OUT_OF_SCOPE]])


def test_threshold_maximises_in_scope_accuracy_plus_oos_recall():
    # τ = 0.7 keeps the three right answers (accuracy 3/4) and rejects both OOS (recall 1);
    # τ = 0.8 would lose a right answer, τ = 0.5 would accept an OOS query
    assert choose_threshold(SCORES, PREDICTIONS, LABELS) == pytest.approx(0.7)


def test_metrics_at_a_threshold_count_rejected_in_scope_queries_as_wrong():
    at_07 = out_of_scope_metrics(SCORES, PREDICTIONS, LABELS, 0.7)
    assert at_07["in_scope_accuracy"].tolist() == [0.75]
    assert at_07["oos_recall"].tolist() == [1.0]
    at_085 = out_of_scope_metrics(SCORES, PREDICTIONS, LABELS, 0.85)
    assert at_085["in_scope_accuracy"].tolist() == [0.25]  # two right answers rejected
    at_0 = out_of_scope_metrics(SCORES, PREDICTIONS, LABELS, 0.0)
    assert at_0["in_scope_accuracy"].tolist() == [0.75] and at_0["oos_recall"].tolist() == [0.0]


def test_threshold_can_reject_everything_when_oos_scores_are_highest():
    scores = np.array([[0.2, 0.3, 0.9, 0.95]])
    labels = np.array([[0, 1, OUT_OF_SCOPE, OUT_OF_SCOPE]])
    predictions = np.array([[1, 0, 0, 0]])  # both in-scope answers wrong: nothing to keep
    threshold = choose_threshold(scores, predictions, labels)
    assert threshold > 0.95
    assert out_of_scope_metrics(scores, predictions, labels, threshold)["oos_recall"] == 1.0
    with pytest.raises(ValueError, match=r"needs both in-scope and out-of-scope"):
        choose_threshold(scores[:, :2], predictions[:, :2], labels[:, :2])


def test_max_softmax_scores():
    scores, predictions = max_softmax_scores(torch.log(torch.tensor([[0.2, 0.7, 0.1]])))
    torch.testing.assert_close(scores, torch.tensor([0.7]))
    assert predictions.tolist() == [1]


def test_out_of_scope_episodes_append_seeded_distinct_queries():
    items = torch.arange(40).reshape(20, 2)
    base = FewShotEpisodes(items, [i // 5 for i in range(20)], n_way=3, k_shot=1, q_query=2,
                           num_episodes=4, seed=0)
    pool = torch.arange(100, 130).reshape(15, 2)
    episodes = OutOfScopeEpisodes(base, pool, oos_per_episode=4, seed=9)
    episode = episodes[2]
    assert episode.query_x.shape == (6 + 4, 2)
    assert episode.query_y.tolist() == base[2].query_y.tolist() + [OUT_OF_SCOPE] * 4
    added = episode.query_x[6:, 0].tolist()
    assert len(set(added)) == 4 and all(100 <= v < 130 for v in added)
    assert torch.equal(episodes[2].query_x, episode.query_x)  # seeded: the same again
    assert not torch.equal(episodes[1].query_x[6:], episode.query_x[6:])
    with pytest.raises(ValueError, match=r"oos_per_episode=16: expected 1..15"):
        OutOfScopeEpisodes(base, pool, oos_per_episode=16, seed=0)


def test_score_is_chosen_on_val_where_softmax_saturates():
    from attnmeta.oos_detection import QueryScores, choose_score

    # squared-distance logits: every softmax is ~1, but the nearest distance separates
    labels = np.array([[0, 1, OUT_OF_SCOPE, OUT_OF_SCOPE]])
    predictions = np.array([[0, 1, 0, 1]])
    found = QueryScores({"max_softmax": np.array([[1.0, 1.0, 1.0, 1.0]]),
                         "max_logit": np.array([[-2.0, -3.0, -40.0, -55.0]])},
                        predictions, labels)
    score, threshold = choose_score(found)
    assert score == "max_logit" and threshold == -3.0
