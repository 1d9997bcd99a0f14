"""What every episodic evaluation shares: the test episode shape asked for, per-episode
accuracy, the evaluation ``train.eval_every`` runs, and the result ``attnmeta eval`` prints and
saves. The episodic (:mod:`~attnmeta.runs.supervised`), pretrain and out-of-scope kinds use it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader

from attnmeta.evaluate import accuracy, per_task_metric, summarize
from attnmeta.learners import MetaLearner
from attnmeta.runs.build import make_episodes
from attnmeta.runs.config import EpisodeConfig
from attnmeta.runs.folder import RunError, write_result
from attnmeta.tasks import LabelledSplit, check_episode_shape, collate_episodes

__all__ = ["takes_n_way", "check_test_shape", "episode_accuracies", "requested_shape",
           "result_name", "in_training_evaluation", "accuracy_result", "FinetuneOptions"]


@dataclass(frozen=True)
class FinetuneOptions:
    """``attnmeta eval --finetune-steps N``: P>M>F's test-time fine-tuning of the encoder on
    each task's support set (:class:`~attnmeta.learners.finetune.SupportFinetuning`), its
    pseudo-queries the support images shifted by up to ``shift`` pixels."""

    steps: int
    lr: float = 1e-3
    shift: int = 2

    def wrap(self, learner: MetaLearner, seed: int) -> MetaLearner:
        """``learner`` fine-tuned this way before each task it predicts."""
        from attnmeta.learners.finetune import SupportFinetuning
        from attnmeta.tasks.augment import random_shifts

        return SupportFinetuning(learner, self.steps, self.lr, random_shifts(self.shift), seed)


def takes_n_way(learner: MetaLearner, config: Any, n_way: int) -> bool:
    """Whether the run's learner can classify ``n_way`` classes: any number, unless it has a
    head of the training ``n_way`` outputs."""
    return not learner.needs_head or n_way == config.data.train.n_way


def check_test_shape(learner: MetaLearner, config: Any, shape: EpisodeConfig) -> None:
    """A learner with an ``n_way``-output head can only be tested on that many classes."""
    if not takes_n_way(learner, config, shape.n_way):
        raise RunError(f"n_way={shape.n_way} at test but the {config.learner.name} head has "
                       f"{config.data.train.n_way} outputs: expected the training n_way")


def episode_accuracies(learner: MetaLearner, split: LabelledSplit, shape: EpisodeConfig,
                       episodes: int, seed: int, batch_size: int = 16, progress: bool = False,
                       description: str = "eval") -> np.ndarray:
    """Accuracy of each of ``episodes`` seeded ``shape`` episodes of ``split``: ``[episodes]``."""
    loader = DataLoader(make_episodes(split, shape, episodes, seed), batch_size=batch_size,
                        collate_fn=collate_episodes, generator=torch.Generator().manual_seed(seed))
    if progress:
        from tqdm.auto import tqdm

        loader = tqdm(loader, desc=description, dynamic_ncols=True)
    was_training = learner.training
    learner.eval()
    try:
        return per_task_metric(learner.predict_batch, loader, accuracy)
    finally:
        learner.train(was_training)


def requested_shape(config: Any, n_way: int | None, k_shot: int | None, within: str | None
               ) -> EpisodeConfig:
    """The test episodes asked for: ``data.test`` with any of its fields overridden.
    ``within='alphabet'`` needs a run trained on Omniglot's background alphabets."""
    test = config.data.test
    shape = EpisodeConfig(n_way or test.n_way, k_shot or test.k_shot, test.q_query,
                          within or test.within)
    if shape.within != "none" and (config.data.dataset, config.data.protocol) != ("omniglot",
                                                                              "lake"):
        raise RunError(f"within={shape.within!r} needs a run trained on Omniglot's background "
                       f"alphabets: expected data.protocol='lake' (this run: "
                       f"data.dataset={config.data.dataset!r}, data.protocol="
                       f"{config.data.protocol!r})")
    return shape


def result_name(split: str, shape: EpisodeConfig, tuning: "FinetuneOptions | None" = None) -> str:
    """``eval_<split>_<N>w<K>s[_within_<group>][_finetune<steps>].json``."""
    within = "" if shape.within == "none" else f"_within_{shape.within}"
    tuned = "" if tuning is None else f"_finetune{tuning.steps}"
    return f"eval_{split}_{shape.n_way}w{shape.k_shot}s{within}{tuned}.json"


def accuracy_key(split: str) -> str:
    """The logged scalar of an in-training evaluation of ``split`` (what selection ranks)."""
    return f"{split}_accuracy"


def selection_metric(train: Any) -> str | None:
    """What ``train.select`` ranks checkpoints by (the lifecycle's ``select_metric``), for
    either run kind's train section: the ``train.eval_split`` accuracy for ``best``, nothing
    for ``last``."""
    return accuracy_key(train.eval_split) if train.select == "best" else None


def in_training_evaluation(learner: MetaLearner, split: LabelledSplit, name: str,
                           shape: EpisodeConfig, episodes: int, seed: int
                           ) -> Callable[[], dict[str, float]]:
    """What ``train.eval_every`` runs: accuracy ± 95% CI on ``episodes`` seeded episodes of
    the split ``name`` (``train.eval_split``), as the scalars to log."""
    def evaluate() -> dict[str, float]:
        summary = summarize(episode_accuracies(learner, split, shape, episodes, seed))
        return {accuracy_key(name): summary.mean, f"{name}_ci95": summary.ci95}
    return evaluate


def accuracy_result(learner: MetaLearner, learner_name: str, data: LabelledSplit, split: str,
                    shape: EpisodeConfig, episodes: int, seed: int, record: dict[str, Any],
                    command: str, save: bool, batch_size: int = 16, progress: bool = False,
                    tuning: FinetuneOptions | None = None) -> dict[str, Any]:
    """The result of ``attnmeta eval`` for any run kind: accuracy (mean ± 95% CI) over
    ``episodes`` seeded ``shape`` episodes of ``data`` (split ``split``), saved beside the
    checkpoint ``record["path"]`` when ``save`` (``written_to``: None if that failed). With
    ``tuning``, the learner is fine-tuned on each episode's support set first (``data``
    then holds the raw inputs the encoder reads)."""
    if tuning is not None:
        learner, learner_name = tuning.wrap(learner, seed), f"{learner_name} + fine-tuning"
    check_episode_shape(data, shape.n_way, shape.k_shot, shape.q_query, f"--split {split}",
                        within=shape.within)
    summary = summarize(episode_accuracies(learner, data, shape, episodes, seed, batch_size,
                                           progress, description=f"eval {split}"))
    run_dir = Path(record["path"]).parent.parent
    result = {
        "command": command, "checkpoint": record["path"], "step": record["step"],
        "learner": learner_name, "split": split, "n_way": shape.n_way,
        "k_shot": shape.k_shot, "q_query": shape.q_query, "within": shape.within,
        "episodes": episodes,
        "episode_seed": seed, "accuracy": summary.mean, "ci95": summary.ci95, "std": summary.std,
        "result_path": str(run_dir / result_name(split, shape, tuning)),
        "test_time_finetuning": None if tuning is None else asdict(tuning),
    }
    result["written_to"] = write_result(result) if save else None
    return result
