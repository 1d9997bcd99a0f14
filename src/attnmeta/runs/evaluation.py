"""What every evaluation on episodes of classes shares: the request (``attnmeta eval``'s
options, :class:`EvalRequest`), the test episode shape asked for, per-episode accuracy, the
evaluation ``train.eval_every`` runs, and the accuracy of a run of either kind over classes
(:func:`evaluate_checkpoint`). The episodic (:mod:`~attnmeta.runs.episodic`), pretrain and
out-of-scope evaluations use it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader

from attnmeta.assignment import ONE_TO_ONE, assigned_accuracy
from attnmeta.metrics import accuracy, per_task_metric, summarize
from attnmeta.learners import MetaLearner
from attnmeta.runs.build import make_episodes
from attnmeta.runs.config import EpisodeConfig
from attnmeta.runs.schema import has_alphabets
from attnmeta.checkpoint import CheckpointError
from attnmeta.runs.folder import RunError, run_kind, write_result
from attnmeta.runs.results import AccuracyResult
from attnmeta.tasks import LabelledSplit, check_episode_shape, collate_episodes

__all__ = ["takes_n_way", "check_test_shape", "episode_accuracies", "requested_shape",
           "result_name", "in_training_evaluation", "accuracy_result", "FinetuneOptions",
           "EvalRequest", "evaluate", "load_classes_run", "evaluate_checkpoint"]


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


@dataclass(frozen=True)
class EvalRequest:
    """An evaluation asked for (``attnmeta eval``'s options; None: the config's value): the
    checkpoint (a run folder or ``step_*.json``), the test episodes (meta-RL: held-out tasks)
    and their seed, the class split, episode shape and data root; ``oos``: out-of-scope
    queries (CLINC150) at a threshold chosen on ``threshold_episodes`` meta-val episodes;
    ``within_alphabet``: each episode's classes from one alphabet; ``one_to_one``: the
    transductive balanced assignment of each episode's queries
    (:mod:`attnmeta.assignment`) instead of each query's argmax; ``finetune_*``:
    test-time fine-tuning (:class:`FinetuneOptions`). Each run kind's ``evaluate`` refuses
    what it has no use for (:meth:`refuse`)."""

    checkpoint: Path
    episodes: int | None = None
    seed: int | None = None
    split: str | None = None
    n_way: int | None = None
    k_shot: int | None = None
    data_root: str | None = None
    oos: bool = False
    threshold_episodes: int = 500
    within_alphabet: bool = False
    one_to_one: bool = False
    finetune_steps: int | None = None
    finetune_lr: float = 1e-3
    finetune_shift: int = 2
    command: str = ""
    progress: bool = False
    save: bool = True

    @property
    def tuning(self) -> FinetuneOptions | None:
        """The test-time fine-tuning asked for (None without ``finetune_steps``)."""
        if self.finetune_steps is None:
            return None
        return FinetuneOptions(self.finetune_steps, self.finetune_lr, self.finetune_shift)

    @property
    def within(self) -> str | None:
        return "alphabet" if self.within_alphabet else None

    def refuse(self, names: tuple[str, ...], why: str) -> None:
        """A :class:`RunError` naming the first of the options ``names`` that is set (as
        its ``--option value``) and ``why`` it cannot be."""
        for name in names:
            value = getattr(self, name)
            if value not in (None, False):
                shown = "" if value is True else f" {value}"
                raise RunError(f"--{name.replace('_', '-')}{shown}: {why}")


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
                       description: str = "eval", one_to_one: bool = False) -> np.ndarray:
    """Accuracy of each of ``episodes`` seeded ``shape`` episodes of ``split``: ``[episodes]``
    (``one_to_one``: of the transductive balanced assignment of each episode's queries,
    :func:`attnmeta.assignment.assigned_accuracy`, instead of each query's argmax)."""
    loader = DataLoader(make_episodes(split, shape, episodes, seed), batch_size=batch_size,
                        collate_fn=collate_episodes, generator=torch.Generator().manual_seed(seed))
    if progress:
        from tqdm.auto import tqdm

        loader = tqdm(loader, desc=description, dynamic_ncols=True)
    was_training = learner.training
    learner.eval()
    try:
        return per_task_metric(learner.predict_batch, loader,
                               assigned_accuracy if one_to_one else accuracy)
    finally:
        learner.train(was_training)


def requested_shape(config: Any, n_way: int | None, k_shot: int | None, within: str | None
               ) -> EpisodeConfig:
    """The test episodes asked for: ``data.test`` with any of its fields overridden.
    ``within='alphabet'`` needs a run trained on Omniglot's background alphabets."""
    test = config.data.test
    shape = EpisodeConfig(n_way or test.n_way, k_shot or test.k_shot, test.q_query,
                          within or test.within)
    if shape.within != "none" and not has_alphabets(config.data):
        raise RunError(f"within={shape.within!r} needs a run trained on Omniglot's background "
                       f"alphabets: expected data.protocol='lake' (this run: "
                       f"data.dataset={config.data.dataset!r}, data.protocol="
                       f"{config.data.protocol!r})")
    return shape


def result_name(split: str, shape: EpisodeConfig, tuning: "FinetuneOptions | None" = None,
                one_to_one: bool = False) -> str:
    """``eval_<split>_<N>w<K>s[_within_<group>][_finetune<steps>][_one_to_one].json``."""
    within = "" if shape.within == "none" else f"_within_{shape.within}"
    tuned = "" if tuning is None else f"_finetune{tuning.steps}"
    assigned = "_one_to_one" if one_to_one else ""
    return f"eval_{split}_{shape.n_way}w{shape.k_shot}s{within}{tuned}{assigned}.json"


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
                    tuning: FinetuneOptions | None = None, one_to_one: bool = False
                    ) -> AccuracyResult:
    """The result of ``attnmeta eval`` for any run kind: accuracy (mean ± 95% CI) over
    ``episodes`` seeded ``shape`` episodes of ``data`` (split ``split``), saved beside the
    checkpoint ``record["path"]`` when ``save`` (``written_to``: None if that failed). With
    ``tuning``, the learner is fine-tuned on each episode's support set first (``data``
    then holds the raw inputs the encoder reads). ``one_to_one``: the transductive balanced
    assignment decides each episode's queries together (the result says so)."""
    if tuning is not None:
        learner, learner_name = tuning.wrap(learner, seed), f"{learner_name} + fine-tuning"
    check_episode_shape(data, shape.n_way, shape.k_shot, shape.q_query, f"--split {split}",
                        within=shape.within)
    summary = summarize(episode_accuracies(learner, data, shape, episodes, seed, batch_size,
                                           progress, description=f"eval {split}",
                                           one_to_one=one_to_one))
    run_dir = Path(record["path"]).parent.parent
    result = AccuracyResult(
        command=command, checkpoint=record["path"], step=record["step"], learner=learner_name,
        split=split, n_way=shape.n_way, k_shot=shape.k_shot, q_query=shape.q_query,
        within=shape.within, episodes=episodes, episode_seed=seed, accuracy=summary.mean,
        ci95=summary.ci95, std=summary.std,
        result_path=str(run_dir / result_name(split, shape, tuning, one_to_one)),
        test_time_finetuning=None if tuning is None else asdict(tuning),
        transductive=ONE_TO_ONE if one_to_one else None)
    result.written_to = write_result(result) if save else None
    return result


def evaluate(request: EvalRequest) -> Any:
    """``attnmeta eval``: ``request`` evaluated by its checkpoint's run kind (which refuses
    the options it has no use for), a :class:`~attnmeta.runs.results.Result`."""
    return run_kind(request.checkpoint).evaluate(request)


def load_classes_run(checkpoint: Path, data_root: str | None = None) -> Any:
    """A run of classes of any kind (episodic; pretrain: prototypes over its encoder) read
    back by its kind's ``load`` (a :class:`~attnmeta.runs.episodic.LoadedRun`); a
    :class:`CheckpointError` for a kind with no classifier (meta-RL)."""
    kind = run_kind(checkpoint)
    if kind.load is None:
        raise CheckpointError(f"checkpoint {checkpoint} is of {kind.description}: expected "
                              "a run of classes (an episodic or pretrain run)")
    return kind.load(Path(checkpoint), data_root)


def evaluate_checkpoint(checkpoint: Path, episodes: int | None = None, seed: int | None = None,
                        split: str | None = None, data_root: str | None = None,
                        n_way: int | None = None, k_shot: int | None = None,
                        batch_size: int = 16, command: str = "", progress: bool = False,
                        save: bool = True, within: str | None = None,
                        tuning: FinetuneOptions | None = None, one_to_one: bool = False
                        ) -> AccuracyResult:
    """Accuracy (mean ± 95% CI) of a run of classes of any kind over a fixed, seeded set of
    test episodes (a pretrain run: prototypes by ``eval.distance`` over its frozen
    encoder). With ``save`` the result is also written to ``written_to`` (None if that
    failed: a warning). ``within='alphabet'``: each episode's classes from one alphabet
    (Lake et al. 2015; a run of ``data.protocol: lake`` only); default
    ``data.test.within``. ``tuning``: test-time fine-tuning of the encoder on each support
    set (a frozen run's too: raw inputs then). ``one_to_one``: the transductive balanced
    assignment of each episode's queries (:mod:`attnmeta.assignment`)."""
    run = load_classes_run(checkpoint, data_root)
    config = run.config
    split = split or config.eval.split
    episodes = episodes or config.eval.episodes
    seed = config.eval.seed if seed is None else seed
    shape = requested_shape(config, n_way, k_shot, within)
    check_test_shape(run.learner, config, shape)
    data = run.learner_split(split) if tuning is None else run.split(split)
    return accuracy_result(run.learner, run.accuracy_name, data, split, shape, episodes, seed,
                           run.record, command, save, batch_size, progress, tuning, one_to_one)
