"""``attnmeta eval RUN --oos``: out-of-scope detection for a trained CLINC150 run (episodic,
or a pretrain run's prototypes over its encoder).

The score and threshold are chosen on meta-val episodes with ``oos_val`` utterances, then
fixed for meta-test episodes with ``oos_test`` ones (:mod:`attnmeta.oos_detection`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

from torch import Tensor

from attnmeta.metrics import summarize
from attnmeta.oos_detection import (SCORES, OutOfScopeEpisodes, QueryScores, choose_score,
                                   out_of_scope_metrics, query_scores, score_episodes)
from attnmeta.runs.build import DATASETS, dataset_entry, make_episodes
from attnmeta.runs.config import EpisodeConfig
from attnmeta.runs.folder import RunError, write_result
from attnmeta.runs.evaluation import check_test_shape, load_classes_run
from attnmeta.runs.results import OutOfScopeResult
from attnmeta.tasks import check_episode_shape

__all__ = ["evaluate_out_of_scope", "threshold_on_val", "chosen_threshold", "below_threshold"]


def evaluate_out_of_scope(checkpoint: Path, episodes: int | None = None,
                          seed: int | None = None, threshold_episodes: int = 500,
                          oos_per_episode: int | None = None, n_way: int | None = None,
                          k_shot: int | None = None, data_root: str | None = None,
                          batch_size: int = 16, command: str = "", save: bool = True
                          ) -> OutOfScopeResult:
    """Choose the score and τ on meta-val OOS episodes, then report meta-test in-scope
    accuracy and OOS recall (mean ± 95% CI over ``episodes`` seeded episodes); with ``save``
    writes ``eval_test_oos_<N>w<K>s.json`` beside the run's other results."""
    run = load_classes_run(Path(checkpoint), data_root)
    config = run.config
    sentences = dataset_entry(config).out_of_scope  # what the data set's entry declares
    if sentences is None:
        having = [name for name, entry in DATASETS.items() if entry.out_of_scope is not None]
        raise RunError(f"--oos needs out-of-scope utterances: data.dataset="
                       f"{config.data.dataset!r} has none, expected one of "
                       f"{', '.join(map(repr, having))}")
    shape = EpisodeConfig(n_way or config.data.test.n_way, k_shot or config.data.test.k_shot,
                          config.data.test.q_query)
    check_test_shape(run.learner, config, shape)
    episodes = episodes or config.eval.episodes
    seed = config.eval.seed if seed is None else seed
    oos_per_episode = oos_per_episode or shape.q_query

    def scored(split: str, count: int) -> QueryScores:
        data = run.learner_split(split)  # features of a frozen encoder for model.freeze
        check_episode_shape(data, shape.n_way, shape.k_shot, shape.q_query, f"--oos {split}")
        in_scope = make_episodes(data, shape, count, seed)
        out_of_scope = run.learner_items(run.tokenizer.encode_batch(
            sentences(config.data.root, split), config.data.max_length))
        return score_episodes(run.learner, OutOfScopeEpisodes(in_scope, out_of_scope,
                                                              oos_per_episode, seed),
                              batch_size)

    score, threshold, val_metrics, test_metrics = threshold_on_val(
        scored, threshold_episodes, episodes)
    in_scope, recall = (summarize(test_metrics[k]) for k in ("in_scope_accuracy", "oos_recall"))
    result = OutOfScopeResult(
        command=command, checkpoint=run.record["path"], step=run.record["step"],
        learner=run.learner_name, split="test", n_way=shape.n_way, k_shot=shape.k_shot,
        q_query=shape.q_query, oos_per_episode=oos_per_episode, episodes=episodes,
        episode_seed=seed, score=score, threshold=threshold,
        threshold_episodes=threshold_episodes,
        val_in_scope_accuracy=float(val_metrics["in_scope_accuracy"].mean()),
        val_oos_recall=float(val_metrics["oos_recall"].mean()),
        in_scope_accuracy=in_scope.mean, in_scope_ci95=in_scope.ci95,
        oos_recall=recall.mean, oos_recall_ci95=recall.ci95,
        result_path=str(run.run_dir / f"eval_test_oos_{shape.n_way}w{shape.k_shot}s.json"))
    result.written_to = write_result(result) if save else None
    return result


def threshold_on_val(scored: Callable[[str, int], Any], threshold_episodes: int,
                     episodes: int) -> tuple[str, float, dict, dict]:
    """The protocol of ``eval --oos``: the score and threshold chosen on
    ``scored("val", threshold_episodes)`` (:func:`attnmeta.oos_detection.choose_score`),
    then measured on ``scored("test", episodes)``; ``scored(split, count)`` gives that
    many scored episodes of the split. Returns the score's name, the threshold and the
    per-episode metrics on val and on test."""
    val = scored("val", threshold_episodes)
    score, threshold = choose_score(val)
    val_metrics = out_of_scope_metrics(val.scores[score], val.predictions, val.labels,
                                       threshold)
    test = scored("test", episodes)
    test_metrics = out_of_scope_metrics(test.scores[score], test.predictions, test.labels,
                                        threshold)
    return score, threshold, val_metrics, test_metrics


def chosen_threshold(run_dir: Path) -> dict[str, Any] | None:
    """The score and threshold an out-of-scope evaluation of the run chose on meta-val (its
    ``eval_*oos*.json``, the newest if there are several), with the file's name; None if
    the run has none."""
    found = sorted(Path(run_dir).glob("eval_*oos*.json"), key=lambda p: p.stat().st_mtime)
    for path in reversed(found):
        try:
            result = json.loads(path.read_text())
            threshold = float(result["threshold"])
            if result["score"] in SCORES and math.isfinite(threshold):
                return {"score": result["score"], "threshold": threshold, "from": path.name}
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def below_threshold(logits: Tensor, score: str, threshold: float) -> list[bool]:
    """Which queries of ``logits [Q, N]`` score (``score``, one of :data:`SCORES`) under
    ``threshold``: the ones an out-of-scope evaluation would reject."""
    return (query_scores(logits)[score] < threshold).tolist()
