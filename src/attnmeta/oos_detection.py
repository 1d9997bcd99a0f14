"""Out-of-scope detection in few-shot episodes (CLINC150, Larson et al., EMNLP 2019).

An out-of-scope (OOS) episode is an ordinary N-way K-shot episode whose query set also
holds ``M`` utterances that belong to none of its N intents (CLINC150's ``oos_*`` sets,
labelled :data:`OUT_OF_SCOPE` = -1). The learner classifies every query as usual; a query
is **rejected** as out-of-scope when its score is below a threshold τ. Two scores are
offered (:data:`SCORES`): the maximum softmax probability over the N classes (Hendrycks &
Gimpel, ICLR 2017) and the maximum logit (Hendrycks et al., ICML 2022), which for ProtoNets
is minus the squared distance to the nearest prototype and does not saturate at 1 the way
the softmax of large distances does.

The score and τ are chosen on meta-**val** episodes (meta-val intents, ``oos_val``
utterances) to maximise in-scope accuracy + OOS recall, then fixed for the meta-test
episodes (meta-test intents, ``oos_test``). As in Larson et al.: **in-scope accuracy** counts an in-scope query as right
only if it is given its intent and not rejected; **OOS recall** is the fraction of
out-of-scope queries rejected. Both are reported per episode, mean ± 95% CI.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from attnmeta.errors import InputError
from attnmeta.learners import MetaLearner
from attnmeta.tasks.episode import Episode, collate_episodes
from attnmeta.tasks.sampler import FewShotEpisodes

__all__ = ["OUT_OF_SCOPE", "SCORES", "OutOfScopeEpisodes", "QueryScores",
           "max_softmax_scores", "query_scores", "choose_threshold", "choose_score", "out_of_scope_metrics",
           "score_episodes"]

OUT_OF_SCOPE = -1
SCORES: tuple[str, ...] = ("max_softmax", "max_logit")


class OutOfScopeEpisodes(Dataset):
    """``episodes[i]`` with ``oos_per_episode`` out-of-scope queries appended.

    Args:
        episodes: the in-scope N-way K-shot episodes.
        out_of_scope: the out-of-scope inputs ``[M_total, ...]`` to draw from.
        oos_per_episode: out-of-scope queries per episode (drawn without replacement).
        seed: episode ``i``'s draw depends only on ``(seed, i)``.

    Items are :class:`Episode` s with ``query_x [N*Q + M, ...]`` and ``query_y`` holding
    ``-1`` for the out-of-scope queries (which come last).
    """

    def __init__(self, episodes: FewShotEpisodes, out_of_scope: Tensor, oos_per_episode: int,
                 seed: int) -> None:
        if not 1 <= oos_per_episode <= len(out_of_scope):
            raise InputError(f"oos_per_episode={oos_per_episode}: expected 1..{len(out_of_scope)}"
                             " (the out-of-scope utterances available)")
        self.episodes, self.out_of_scope = episodes, out_of_scope
        self.oos_per_episode, self.seed = oos_per_episode, seed

    def __len__(self) -> int:
        return len(self.episodes)

    def __getitem__(self, index: int) -> Episode:
        episode = self.episodes[index]
        rng = np.random.default_rng([self.seed, index, 1])
        picks = torch.from_numpy(rng.choice(len(self.out_of_scope), self.oos_per_episode,
                                            replace=False))
        return Episode(episode.support_x, episode.support_y,
                       torch.cat([episode.query_x, self.out_of_scope[picks]]),
                       torch.cat([episode.query_y,
                                  torch.full((self.oos_per_episode,), OUT_OF_SCOPE)]))


def query_scores(logits: Tensor) -> dict[str, Tensor]:
    """Every score of :data:`SCORES` for each query of ``logits [..., N]`` (``[...]``
    each): the maximum softmax probability and the maximum logit."""
    return {"max_softmax": max_softmax_scores(logits)[0],
            "max_logit": logits.float().max(dim=-1).values}


def max_softmax_scores(logits: Tensor) -> tuple[Tensor, Tensor]:
    """``logits [..., N]`` -> (max softmax probability ``[...]``, argmax class ``[...]``)."""
    probabilities = torch.softmax(logits.float(), dim=-1)
    scores, predictions = probabilities.max(dim=-1)
    return scores, predictions


@dataclass
class QueryScores:
    """Per-query ``scores`` (name in :data:`SCORES` -> ``[T, Q]``), ``predictions`` and
    ``labels`` (``-1`` = out-of-scope), numpy arrays for ``T`` episodes."""

    scores: dict[str, np.ndarray]
    predictions: np.ndarray
    labels: np.ndarray


def choose_threshold(scores: np.ndarray, predictions: np.ndarray, labels: np.ndarray) -> float:
    """τ maximising in-scope accuracy + OOS recall over all the given queries pooled.

    A query is accepted when its score is ``>= τ``. Candidates are every observed score and
    one above them all (reject everything); among equally good candidates the smallest wins
    (reject as little as possible).
    """
    scores, predictions, labels = (np.asarray(a).ravel() for a in (scores, predictions, labels))
    in_scope = labels != OUT_OF_SCOPE
    if not in_scope.any() or in_scope.all():
        raise ValueError("choosing a threshold needs both in-scope and out-of-scope queries")
    correct_scores = np.sort(scores[in_scope & (predictions == labels)])
    oos_scores = np.sort(scores[~in_scope])
    candidates = np.unique(np.append(scores, np.nextafter(scores.max(), np.inf)))
    # accepted-and-correct in-scope queries: score >= τ; rejected OOS queries: score < τ
    accuracy = (len(correct_scores) - np.searchsorted(correct_scores, candidates, "left")) \
        / in_scope.sum()
    recall = np.searchsorted(oos_scores, candidates, "left") / (~in_scope).sum()
    return float(candidates[np.argmax(accuracy + recall)])


def choose_score(found: QueryScores) -> tuple[str, float]:
    """(score name, τ): the pair with the highest in-scope accuracy + OOS recall on
    ``found`` (ties: the earlier of :data:`SCORES`)."""
    best: tuple[float, str, float] | None = None
    for name in SCORES:
        threshold = choose_threshold(found.scores[name], found.predictions, found.labels)
        metrics = out_of_scope_metrics(found.scores[name], found.predictions, found.labels,
                                       threshold)
        objective = float(metrics["in_scope_accuracy"].mean() + metrics["oos_recall"].mean())
        if best is None or objective > best[0]:
            best = (objective, name, threshold)
    return best[1], best[2]


def out_of_scope_metrics(scores: np.ndarray, predictions: np.ndarray, labels: np.ndarray,
                         threshold: float) -> dict[str, np.ndarray]:
    """Per-episode ``in_scope_accuracy [T]`` and ``oos_recall [T]`` of ``[T, Q]`` arrays."""
    accepted = scores >= threshold
    in_scope = labels != OUT_OF_SCOPE
    right = accepted & (predictions == labels) & in_scope
    return {"in_scope_accuracy": right.sum(1) / in_scope.sum(1),
            "oos_recall": (~accepted & ~in_scope).sum(1) / (~in_scope).sum(1)}


def score_episodes(learner: MetaLearner, episodes: Dataset, batch_size: int = 16
                   ) -> QueryScores:
    """Run ``learner.predict_batch`` over ``episodes``; every score of :data:`SCORES` for
    each query."""
    loader = DataLoader(episodes, batch_size=batch_size, collate_fn=collate_episodes)
    scores: dict[str, list[np.ndarray]] = {name: [] for name in SCORES}
    predictions, labels = [], []
    was_training = learner.training
    learner.eval()
    try:
        for batch in loader:
            logits = learner.predict_batch(batch).float()
            for name, values in query_scores(logits).items():
                scores[name].append(values.numpy())
            predictions.append(max_softmax_scores(logits)[1].numpy())
            labels.append(batch.query_y.numpy())
    finally:
        learner.train(was_training)
    return QueryScores({name: np.concatenate(values) for name, values in scores.items()},
                       np.concatenate(predictions), np.concatenate(labels))
