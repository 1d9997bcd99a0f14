"""The pretraining run kind (``kind: pretrain``): an encoder trained as one classifier over
every class of the train split, evaluated as prototypes over the frozen encoder.

The good-embedding recipe of Chen et al. (ICLR 2019), Tian et al.'s RFS (ECCV 2020) and the
first stage of P>M>F (Hu et al., CVPR 2022); any episodic run starts from it with
``model.init: RUN_DIR`` (fine-tuned, or frozen with ``model.freeze: true``). It shares the
lifecycle of the other kinds (:func:`attnmeta.runs.lifecycle.train_in_folder`): checkpoints,
resume, time budget, ``train.eval_every``. The batch of step ``s`` depends only on
``(seed, s)``: the examples are the next ``batch_size`` of a seeded permutation per epoch,
and their random shifts (up to ``train.shift`` pixels, zero-filled) and ``data.augment``'s
flips and crops come from generators seeded by ``(seed, s)``, so a killed run resumes bit
for bit.

Text data sets pretrain the same way over their training intents (no shifts, no
augmentation), the run's tokenizer saved in its folder as the episodic kind does
(:mod:`attnmeta.runs.tokenizer`); ``configs/text/pretrain_wordllama_*.yaml`` adapt a linear
map over frozen WordLlama vectors. ``learner.init: imprinted`` starts the cosine classifier
at the class means of the untrained encoder's features (Qi et al., CVPR 2018), so the first
steps refine a classifier that already works instead of undoing a random one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import Tensor

from attnmeta.checkpoint import (CheckpointError, load_checkpoint)
from attnmeta.distributed import DistributedContext
from attnmeta.learners import ClassBatch
from attnmeta.runs.build import build_classifier, build_optimizer, is_text, load_split
from attnmeta.runs.config import (ConfigError, PretrainConfig, config_to_dict)
from attnmeta.runs.features import embed_items
from attnmeta.runs.folder import read_run
from attnmeta.runs.kinds import RunKind, register_run_kind
from attnmeta.runs.lifecycle import (RESUMABLE_CLASSES, TrainingPlan, set_threads,
                                     train_in_folder)
from attnmeta.runs.results import TrainResult
from attnmeta.runs.rl import stream_seed
from attnmeta.runs.evaluation import in_training_evaluation, selection_metric
from attnmeta.runs.episodic import LoadedRun, evaluate_classes, learning_rate
from attnmeta.tasks import LabelledSplit, check_episode_shape
from attnmeta.tasks.augment import AUGMENTATIONS, random_shifts
from attnmeta.bpe import TextTokenizer

__all__ = ["KIND", "class_batches", "train_pretrain", "load_pretrain_run"]

KIND = "pretrain"
ORDER, SHIFTS, AUGMENT = 10, 11, 12  # seed streams (see attnmeta.runs.rl.stream_seed)


def class_batches(split: LabelledSplit, batch_size: int, shift: int, seed: int,
                  start_step: int, steps: int, augment: str = "none") -> Iterator[ClassBatch]:
    """The batches of steps ``start_step .. steps-1``; step ``s`` holds examples
    ``s*B .. s*B+B-1`` of the endless sequence of per-epoch permutations of ``split``
    (epoch ``e`` permuted by a generator of ``(seed, e)``), shifted by up to ``shift``
    pixels by a generator of ``(seed, s)``, then augmented as ``augment`` names (a key of
    :data:`attnmeta.tasks.augment.AUGMENTATIONS`, or 'none') by another."""
    items, labels = split.items, split.labels
    count = labels.shape[0]
    orders: dict[int, Tensor] = {}
    for step in range(start_step, steps):
        positions = torch.arange(step * batch_size, (step + 1) * batch_size)
        epochs = positions // count
        index = torch.empty(batch_size, dtype=torch.long)
        for epoch in epochs.unique().tolist():
            if epoch not in orders:
                orders = {e: o for e, o in orders.items() if e >= epoch - 1}
                generator = torch.Generator().manual_seed(stream_seed(seed, ORDER, epoch))
                orders[epoch] = torch.randperm(count, generator=generator)
            chosen = epochs == epoch
            index[chosen] = orders[epoch][positions[chosen] % count]
        x = items[index]
        if shift:
            generator = torch.Generator().manual_seed(stream_seed(seed, SHIFTS, step))
            x = random_shifts(shift)(x, generator)
        if augment != "none":
            generator = torch.Generator().manual_seed(stream_seed(seed, AUGMENT, step))
            x = AUGMENTATIONS[augment](x, generator)
        yield ClassBatch(x, labels[index])


def _train_split(config: PretrainConfig, tokenizer: TextTokenizer | None) -> LabelledSplit:
    if is_text(config):
        for key, value, default in (("train.shift", config.train.shift, 0),
                                    ("data.augment", config.data.augment, "none")):
            if value != default:
                raise ConfigError(f"config key '{key}' is {value!r}: expected {default!r} for "
                                  f"the text data set {config.data.dataset!r} (images only)")
    split = load_split(config, "train", tokenizer)
    if len(split.class_names) < 2:
        raise ConfigError(f"data.dataset={config.data.dataset!r}: the train split has "
                          f"{len(split.class_names)} class: expected at least 2 to classify")
    return split


def _plan(config: PretrainConfig, run_dir: Path, split: LabelledSplit,
          tokenizer: TextTokenizer | None, will_evaluate: bool, resuming: bool) -> TrainingPlan:
    test, train = config.data.test, config.train
    if tokenizer is not None:  # text: a resumed run reads its examples with its own tokenizer
        from attnmeta.runs.tokenizer import run_tokenizer

        saved = run_tokenizer(config, run_dir, resuming, save=True, made=tokenizer)
        split = split if saved is tokenizer else _train_split(config, saved)
        tokenizer = saved
    if will_evaluate:  # the data first: nothing is built for a bad shape
        check_episode_shape(load_split(config, config.eval.split, tokenizer), test.n_way,
                            test.k_shot, test.q_query, "data.test")
    if train.eval_every:  # model selection: train.eval_split
        eval_split = load_split(config, train.eval_split, tokenizer)
        check_episode_shape(eval_split, test.n_way, test.k_shot, test.q_query,
                            f"data.test (train.eval_split={train.eval_split!r})")
    torch.manual_seed(config.seed)
    # a resumed run's weights come from its checkpoint: model.pretrained_path is not read
    learner = build_classifier(config, len(split.class_names), pretrained=not resuming)
    if config.learner.init == "imprinted" and not resuming:  # a resumed run has its weights
        learner.classifier.imprint(embed_items(learner.encoder, split.items), split.labels)
    evaluate = None
    if train.eval_every:
        evaluate = in_training_evaluation(learner, eval_split, train.eval_split, test,
                                          train.eval_episodes, config.eval.seed)

    return TrainingPlan(
        learner, build_optimizer(config, learner, weight_decay=train.weight_decay),
        lambda start: class_batches(split, train.batch_size, train.shift, config.seed, start,
                                    train.steps, config.data.augment),
        train.steps, train, learning_rate=lambda step: learning_rate(config, step),
        evaluate=evaluate, eval_every=train.eval_every,
        select_metric=selection_metric(train),
        backward_chunk=train.backward_chunk, precision=train.precision)


def train_pretrain(config: PretrainConfig, run_dir: Path, resume: bool = False,
                   progress: bool = True, command: str = "", will_evaluate: bool = True,
                   on_step_end: Callable[[int], None] | None = None) -> TrainResult:
    """Pretrain as configured, checkpointing into ``run_dir``; resumable after a kill with
    the same weights. ``will_evaluate``: the test split is loaded and checked first."""
    set_threads(config.train.threads)
    tokenizer = None
    if is_text(config):
        from attnmeta.runs.tokenizer import make_tokenizer

        tokenizer = make_tokenizer(config)
    # before the folder is claimed: its class count is an input
    split = _train_split(config, tokenizer)
    return train_in_folder(Path(run_dir), KIND, config_to_dict(config),
                           lambda resuming: _plan(config, Path(run_dir), split, tokenizer,
                                                  will_evaluate, resuming),
                           RESUMABLE_CLASSES,
                           DistributedContext(), resume=resume, progress=progress,
                           command=command, description=config.name, on_step_end=on_step_end,
                           inputs={"num_classes": len(split.class_names)})


def load_pretrain_run(path: Path, data_root: str | None = None) -> LoadedRun:
    """A pretrain run read back (the kind's ``load``): its config, the classifier with the
    checkpoint's weights (evaluated as prototypes over its encoder), the checkpoint record,
    the run's tokenizer for text (else None) and the classifier's width."""
    json_path, record, config = read_run(path, KIND)
    classes = (record.get("inputs") or {}).get("num_classes")
    if not isinstance(classes, int):
        raise CheckpointError(f"checkpoint {json_path} records no inputs.num_classes: "
                              "expected the record a pretrain run writes")
    if data_root is not None:
        config.data.root = data_root
    tokenizer = None
    if is_text(config):
        from attnmeta.runs.tokenizer import load_run_tokenizer

        tokenizer = load_run_tokenizer(json_path.parent.parent)
    learner = build_classifier(config, classes)
    record = load_checkpoint(json_path, learner)
    record["path"] = str(json_path)
    learner.eval()
    return LoadedRun(config, learner, record, tokenizer, num_classes=classes,
                     learner_name="pretrain",
                     accuracy_name=f"pretrain ({config.eval.distance} prototypes)")


register_run_kind(RunKind(KIND, PretrainConfig, "a pretrain run (kind: pretrain)",
                          train_pretrain, evaluate_classes, load_pretrain_run,
                          build_classifier, counts_classes=True, resumable=RESUMABLE_CLASSES))
