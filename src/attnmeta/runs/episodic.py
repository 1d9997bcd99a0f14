"""The episodic run kind (``kind: episodic``, or no kind; ``supervised`` before it was
renamed): meta-train from a config on episodes of images or text, evaluate a checkpoint.

``attnmeta train`` and ``attnmeta eval`` call :func:`train_run` and
:func:`evaluate_classes` through the kind's registry entry (:mod:`attnmeta.runs.kinds`,
registered at the bottom). A run folder holds its marker, ``config.yaml`` (resolved),
``checkpoints/``, ``log.jsonl``, TensorBoard scalars in ``tb/``, a text run's
``tokenizer.json`` and, after evaluation, ``eval_<split>_<N>w<K>s.json``. Everything a
run reads is loaded and checked before its first step: the splits it trains and
evaluates on, and each episode shape against its split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from attnmeta.checkpoint import (load_checkpoint)
from attnmeta.distributed import DistributedContext, init_from_environment, shard_range
from attnmeta.learners import MetaLearner
from attnmeta.learners.precision import check_precision
from attnmeta.runs.build import (build_learner, build_optimizer, is_text, load_split,
                                 make_episodes, training_episodes)
from attnmeta.runs.config import ExperimentConfig, config_to_dict
from attnmeta.runs.features import InitEncoder, load_init, model_input, model_items
from attnmeta.runs.evaluation import (EvalRequest, check_test_shape, evaluate_checkpoint,
                                      in_training_evaluation, selection_metric)
from attnmeta.runs.folder import RunError, read_run
from attnmeta.runs.kinds import RunKind, register_run_kind
from attnmeta.runs.lifecycle import RESUMABLE_CLASSES, TrainingPlan, set_threads, train_in_folder
from attnmeta.runs.out_of_scope import evaluate_out_of_scope
from attnmeta.runs.results import AccuracyResult, OutOfScopeResult, TrainResult
from attnmeta.tasks import LabelledSplit, check_episode_shape, collate_episodes

if TYPE_CHECKING:
    from attnmeta.bpe import TextTokenizer

__all__ = ["KIND", "RESUMABLE", "LoadedRun", "learning_rate", "train_run", "load_run",
           "evaluate_checkpoint", "RunError"]

KIND = "episodic"
# Config keys a resume may change: those of every kind over classes, and the worker threads
RESUMABLE = RESUMABLE_CLASSES + ("train.workers",)


def learning_rate(config: ExperimentConfig, step: int) -> float:
    """The outer learning rate for ``step``: a pure function of the step, so resuming needs
    no scheduler state."""
    train = config.train
    if train.lr_schedule == "linear":
        return train.lr * max(0.0, 1.0 - step / train.steps)
    return train.lr * (0.5 ** (step // train.lr_decay_every) if train.lr_decay_every else 1.0)


class ShardSampler:
    """Episode indices of this rank's shard of meta-batches ``start_step .. steps-1``:
    step ``s`` covers episodes ``s*T + shard_start .. s*T + shard_stop - 1``."""

    def __init__(self, start_step: int, steps: int, meta_batch: int, shard: tuple[int, int]):
        self.start_step, self.steps = start_step, steps
        self.meta_batch, self.shard = meta_batch, shard

    def __iter__(self):
        for step in range(self.start_step, self.steps):
            yield from range(step * self.meta_batch + self.shard[0],
                             step * self.meta_batch + self.shard[1])

    def __len__(self) -> int:
        return (self.steps - self.start_step) * (self.shard[1] - self.shard[0])


def _selection_split(config: ExperimentConfig, tokenizer: TextTokenizer | None
                     ) -> LabelledSplit:
    """``train.eval_split``, the split evaluated every ``train.eval_every`` steps."""
    try:
        return load_split(config, config.train.eval_split, tokenizer)
    except FileNotFoundError as error:
        raise FileNotFoundError(
            f"{error} (train.eval_split={config.train.eval_split!r} is evaluated every "
            f"train.eval_every steps: add that split, or set train.eval_split=test or "
            f"train.eval_every=0)") from error


def _plan(config: ExperimentConfig, run_dir: Path, resuming: bool, context: DistributedContext,
          will_evaluate: bool, init: InitEncoder | None = None) -> TrainingPlan:
    """Build and check everything the run needs, before its first step."""
    tokenizer = None
    if is_text(config):  # trained on meta-train text, saved with the run
        from attnmeta.runs.tokenizer import run_tokenizer

        tokenizer = run_tokenizer(config, run_dir, resuming=resuming, save=context.is_main)
    split = load_split(config, "train", tokenizer)
    shape, test = config.data.train, config.data.test
    check_episode_shape(split, shape.n_way, shape.k_shot, shape.q_query, "data.train",
                        within=shape.within)
    # the data first: a wrong n_way must not size a model
    if will_evaluate:  # the final test, eval.split, read once the model is trained
        check_episode_shape(load_split(config, config.eval.split, tokenizer), test.n_way,
                            test.k_shot, test.q_query, "data.test", within=test.within)
    name = config.train.eval_split  # model selection: what train.eval_every reads
    if config.train.eval_every:
        eval_split = _selection_split(config, tokenizer)
        check_episode_shape(eval_split, test.n_way, test.k_shot, test.q_query, "data.test",
                            within=test.within)
    torch.manual_seed(config.seed)
    # a resumed run's weights come from its checkpoint: model.pretrained_path is not read
    learner = build_learner(config, None if init is None else init.state,
                            pretrained=not resuming)
    try:
        check_precision(learner, config.train.precision, "train.precision")
    except ValueError as error:
        raise RunError(str(error)) from None
    if config.learner.strategy == "compiled" and config.train.workers > 1:
        # each meta-batch's per-thread copies of the learner would compile again: measured
        # slower than one worker (benchmarks/results/speed.md)
        raise RunError(f"train.workers={config.train.workers}: expected 1 with "
                       "learner.strategy: compiled (the per-thread copies of the learner "
                       "would each compile again)")
    optimizer = build_optimizer(config, learner)
    split = model_input(config, learner, split, run_dir)  # model.freeze: features, cached
    if config.train.eval_every:
        eval_split = model_input(config, learner, eval_split, run_dir)
    evaluate = None
    if will_evaluate or config.train.eval_every:
        check_test_shape(learner, config, test)
    if config.train.eval_every:
        evaluate = in_training_evaluation(learner, eval_split, name, test,
                                          config.train.eval_episodes, config.eval.seed)

    steps, meta_batch = config.train.steps, config.train.meta_batch
    shard = shard_range(meta_batch, context)
    # data.augment: training episodes only (evaluation reads make_episodes' as they are)
    episodes = training_episodes(config, make_episodes(split, shape, steps * meta_batch,
                                                       config.seed))

    def batches(start_step: int) -> DataLoader:
        return DataLoader(episodes, batch_size=shard[1] - shard[0], collate_fn=collate_episodes,
                          sampler=ShardSampler(start_step, steps, meta_batch, shard),
                          num_workers=config.data.workers,
                          # its own generator: creating the iterator must not draw from the
                          # global RNG, or a resumed run would diverge from an unbroken one
                          generator=torch.Generator().manual_seed(config.seed))

    return TrainingPlan(learner, optimizer, batches, steps, config.train,
                        learning_rate=lambda step: learning_rate(config, step),
                        evaluate=evaluate if context.is_main else None,
                        eval_every=config.train.eval_every,
                        select_metric=selection_metric(config.train),
                        backward_chunk=config.train.backward_chunk, workers=config.train.workers,
                        precision=config.train.precision)


def train_run(config: ExperimentConfig, run_dir: Path, resume: bool = False,
              progress: bool = True, command: str = "", will_evaluate: bool = True,
              on_step_end: Callable[[int], None] | None = None) -> TrainResult:
    """Meta-train as configured, checkpointing into ``run_dir``; resumable after a kill.

    Episode ``i`` of training depends only on ``(config.seed, i)`` and every RNG state is
    checkpointed, so a resumed run reaches the same weights as an uninterrupted one.
    ``will_evaluate``: the test split (``eval.split``) is loaded and checked before
    training; with ``train.eval_every`` the split it evaluates (``train.eval_split``, by
    default 'val') is too.
    """
    context = init_from_environment()
    shard_range(config.train.meta_batch, context)  # refuse uneven shards before any work
    set_threads(config.train.threads)
    init = None if config.model.init is None else load_init(config.model.init)
    plan = lambda resuming: _plan(config, Path(run_dir), resuming, context,  # noqa: E731
                                  will_evaluate, init)
    return train_in_folder(Path(run_dir), KIND, config_to_dict(config), plan, RESUMABLE, context,
                           resume=resume, progress=progress, command=command,
                           description=config.name, on_step_end=on_step_end,
                           inputs=None if init is None else init.inputs())


@dataclass
class LoadedRun:
    """A trained run of classes read back (what a kind's ``load`` gives): its config,
    learner (checkpoint weights), checkpoint record (``record["path"]``: the JSON), a text
    run's tokenizer, the classifier width a pretrain run's learner is built with (None for
    others), and what results call the learner: ``learner_name`` (out-of-scope results),
    ``accuracy_name`` (accuracy results; the learner's name unless said otherwise)."""

    config: Any
    learner: MetaLearner
    record: dict[str, Any]
    tokenizer: TextTokenizer | None = None
    num_classes: int | None = None
    learner_name: str = ""
    accuracy_name: str = ""

    def __post_init__(self) -> None:
        self.learner_name = self.learner_name or self.config.learner.name
        self.accuracy_name = self.accuracy_name or self.learner_name

    @property
    def run_dir(self) -> Path:
        return Path(self.record["path"]).parent.parent

    def split(self, name: str) -> LabelledSplit:
        return load_split(self.config, name, self.tokenizer)

    def learner_split(self, name: str) -> LabelledSplit:
        """Split ``name`` as the learner reads it (frozen features for ``model.freeze``)."""
        return model_input(self.config, self.learner, self.split(name), self.run_dir)

    def learner_items(self, items: Tensor) -> Tensor:
        """Raw ``items`` from outside the splits as the learner reads them."""
        return model_items(self.config, self.learner, items)


def load_run(checkpoint: Path, data_root: str | None = None) -> LoadedRun:
    """A run folder (its newest valid checkpoint) or a checkpoint file, read back."""
    json_path, _, config = read_run(checkpoint, KIND)
    if data_root is not None:
        config.data.root = data_root
    learner = build_learner(config)
    record = load_checkpoint(json_path, learner)
    record["path"] = str(json_path)
    tokenizer = None
    if is_text(config):
        from attnmeta.runs.tokenizer import load_run_tokenizer

        tokenizer = load_run_tokenizer(json_path.parent.parent)
    learner.eval()
    return LoadedRun(config, learner, record, tokenizer)


def evaluate_classes(request: EvalRequest) -> AccuracyResult | OutOfScopeResult:
    """``attnmeta eval`` of a run of classes (episodic or pretrain): accuracy on seeded test
    episodes, or with ``request.oos`` in-scope accuracy and out-of-scope recall at a
    threshold chosen on meta-val (:func:`~attnmeta.runs.out_of_scope.evaluate_out_of_scope`,
    which needs the test split and no alphabets or fine-tuning)."""
    if not request.oos:
        return evaluate_checkpoint(request.checkpoint, request.episodes, request.seed,
                                   request.split, request.data_root, request.n_way,
                                   request.k_shot, command=request.command,
                                   progress=request.progress, save=request.save,
                                   within=request.within, tuning=request.tuning,
                                   one_to_one=request.one_to_one)
    if request.split not in (None, "test"):
        raise RunError(f"--split {request.split} with --oos: expected test (the threshold is "
                       "chosen on val)")
    if request.within_alphabet:
        raise RunError("--within-alphabet with --oos: expected one of them (intents have no "
                       "alphabets)")
    request.refuse(("finetune_steps", "one_to_one"), "with --oos: expected one of them")
    return evaluate_out_of_scope(request.checkpoint, episodes=request.episodes,
                                 seed=request.seed,
                                 threshold_episodes=request.threshold_episodes,
                                 n_way=request.n_way, k_shot=request.k_shot,
                                 data_root=request.data_root, command=request.command,
                                 save=request.save)


def fresh_learner(config: ExperimentConfig, num_classes: int | None = None) -> MetaLearner:
    """The learner ``config`` builds, with fresh weights (the kind's ``build``; its width is
    ``data.train.n_way``, so ``num_classes`` is not read)."""
    return build_learner(config)


register_run_kind(RunKind(
    KIND, ExperimentConfig, "an episodic run", train_run, evaluate_classes, load_run,
    fresh_learner, resumable=RESUMABLE, aliases=("supervised",), implicit=True))
