"""Config -> data, model, learner; a resumable training run; seeded evaluation.

This is what ``attnmeta train`` and ``attnmeta eval`` call. A run folder holds
``config.yaml`` (resolved), ``checkpoints/``, ``log.jsonl``, TensorBoard scalars in
``tb/`` and, after evaluation, ``eval_<split>.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader

from attnmeta.checkpoint import (CheckpointError, latest_checkpoint, load_checkpoint,
                                 resolve_checkpoint, save_checkpoint)
from attnmeta.runs.config import EpisodeConfig, ExperimentConfig, config_from_dict, config_to_dict
from attnmeta.distributed import (any_rank, broadcast_parameters, init_from_environment,
                                  shard_range)
from attnmeta.files import atomic_write_bytes
from attnmeta.evaluate import accuracy, per_task_metric, summarize
from attnmeta.learners import (FEAT, MAML, InContextClassifier, MatchingNet, MetaLearner,
                               ProtoNet, Reptile)
from attnmeta.models import BACKBONES
from attnmeta.tasks import FewShotEpisodes, collate_episodes
from attnmeta.tasks.image_folder import LabelledImages, load_image_folder
from attnmeta.tasks.text import TEXT_DATASETS, LabelledTokens
from attnmeta.train import meta_train

if TYPE_CHECKING:
    from attnmeta.tokenizer import TextTokenizer

__all__ = ["build_learner", "load_split", "train_run", "evaluate_checkpoint", "RunError"]

# Keys that may differ between a checkpoint's config and the resuming one.
RESUMABLE_CHANGES = ("train.steps", "train.log_every", "train.checkpoint_every",
                     "train.backward_chunk", "train.workers",
                     "train.keep_checkpoints", "train.eval_every", "train.eval_episodes",
                     "train.max_minutes",
                     "data.root", "data.workers")


class RunError(ValueError):
    """A run folder or request that cannot be carried out as asked."""


class _BudgetReached(Exception):
    """Internal: the training-time budget is spent (a checkpoint has been written)."""


def build_model(config: ExperimentConfig) -> nn.Module:
    """The configured backbone from :data:`attnmeta.models.BACKBONES` (a text encoder from
    :mod:`attnmeta.models.text` for the text data sets)."""
    # Gradient-based learners adapt a classification head; the others need features.
    needs_head = config.learner.name in ("maml", "fomaml", "reptile")
    out_dim = config.data.train.n_way if needs_head else 0
    if config.data.dataset in TEXT_DATASETS:
        from attnmeta.models.text import text_encoder_from_config

        return text_encoder_from_config(config.model, config.data, out_dim=out_dim)
    factory = BACKBONES.get(config.model.backbone)
    if factory is None:
        raise RunError(f"model.backbone={config.model.backbone!r}: expected one of "
                       f"{sorted(BACKBONES)} (add others with attnmeta.models.register_backbone)")
    return factory(config.model, in_channels=1, out_dim=out_dim,
                   image_size=config.data.image_size)


def build_learner(config: ExperimentConfig) -> MetaLearner:
    """The learner named by ``config.learner.name`` around the configured backbone."""
    model, spec = build_model(config), config.learner
    if spec.name in ("maml", "fomaml"):
        return MAML(model, spec.inner_lr, spec.inner_steps, first_order=spec.name == "fomaml",
                    learn_inner_lr=spec.learn_inner_lr, adapt_only=spec.adapt_only,
                    strategy=spec.strategy)
    if spec.name == "reptile":
        return Reptile(model, spec.inner_lr, spec.inner_steps, inner_optimizer=spec.inner_optimizer)
    if spec.name == "protonet":
        return ProtoNet(model, distance=spec.distance)
    needs_width = spec.name in ("feat", "incontext") or (spec.name == "matching" and spec.fce)
    if needs_width and not hasattr(model, "feature_dim"):
        raise RunError(f"learner.name={spec.name!r} needs the backbone's feature_dim "
                       f"attribute; model.backbone={config.model.backbone!r} has none")
    if spec.name == "matching":
        return MatchingNet(model, scale=spec.scale, fce=spec.fce,
                           feature_dim=getattr(model, "feature_dim", None),
                           fce_steps=spec.fce_steps)
    if spec.name == "feat":
        return FEAT(model, model.feature_dim, n_heads=spec.heads, dropout=spec.dropout,
                    temperature=spec.temperature, aux_temperature=spec.aux_temperature,
                    balance=spec.balance)
    if spec.name == "incontext":
        return InContextClassifier(model, model.feature_dim, d_model=2 * model.feature_dim,
                                   depth=config.model.depth, n_heads=config.model.heads,
                                   dropout=spec.dropout)
    raise RunError(f"learner.name={spec.name!r}: expected one of maml, fomaml, reptile, "
                   "protonet, matching, feat, incontext")


def load_split(config: ExperimentConfig, split: str, tokenizer: TextTokenizer | None = None
               ) -> LabelledImages | LabelledTokens:
    """Images and labels of ``split`` ('train' | 'val' | 'test') of the configured data set;
    for a text data set, the class split's sentences as ids of the run's ``tokenizer``."""
    data = config.data
    if data.dataset in TEXT_DATASETS:
        if tokenizer is None:
            raise RunError(f"data.dataset={data.dataset!r} is text: expected the run's "
                           "tokenizer (load_run attaches it as learner.tokenizer)")
        from attnmeta.tasks.text import load_text_split

        return load_text_split(data, split, tokenizer)
    if data.dataset == "omniglot":
        from attnmeta.tasks.omniglot import load_omniglot

        return load_omniglot(data.root, split=split, protocol=data.protocol,
                             image_size=data.image_size)
    if data.dataset == "image_folder":
        if data.root is None:
            raise RunError("data.root is not set: expected the image folder's path "
                           "(data.root=/path/with/train/and/test)")
        return load_image_folder(data.root, split=split, image_size=data.image_size)
    raise RunError(f"data.dataset={data.dataset!r}: expected one of 'omniglot', "
                   f"'image_folder', {', '.join(repr(name) for name in TEXT_DATASETS)}")


def make_episodes(split: LabelledImages | LabelledTokens, shape: EpisodeConfig,
                  num_episodes: int, seed: int) -> FewShotEpisodes:
    items = split.token_ids if isinstance(split, LabelledTokens) else split.images
    return FewShotEpisodes(items, split.labels.tolist(), n_way=shape.n_way,
                           k_shot=shape.k_shot, q_query=shape.q_query,
                           num_episodes=num_episodes, seed=seed)


class ShardSampler:
    """Episode indices of this rank's shard of meta-batches ``start_step .. steps-1``:
    step ``s`` covers episodes ``s*T + shard_start .. s*T + shard_stop - 1``."""

    def __init__(self, start_step: int, steps: int, meta_batch: int, shard: tuple[int, int]):
        self.start_step, self.steps, self.meta_batch, self.shard = start_step, steps, meta_batch, shard

    def __iter__(self):
        for step in range(self.start_step, self.steps):
            yield from range(step * self.meta_batch + self.shard[0],
                             step * self.meta_batch + self.shard[1])

    def __len__(self) -> int:
        return (self.steps - self.start_step) * (self.shard[1] - self.shard[0])


def build_optimizer(config: ExperimentConfig, learner: nn.Module) -> torch.optim.Optimizer:
    if config.train.optimizer == "adam":
        return torch.optim.Adam(learner.parameters(), lr=config.train.lr)
    if config.train.optimizer == "sgd":
        return torch.optim.SGD(learner.parameters(), lr=config.train.lr)
    raise RunError(f"train.optimizer={config.train.optimizer!r}: expected 'adam' or 'sgd'")


class RunLog:
    """A run's ``log.jsonl`` and TensorBoard scalars (``tb/``); a no-op off rank 0."""

    def __init__(self, run_dir: Path, enabled: bool) -> None:
        self.path = run_dir / "log.jsonl"
        self.writer = None
        if enabled:
            from tensorboardX import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tb"))

    def write(self, step: int, elapsed_s: float, scalars: dict[str, float], group: str) -> None:
        """Append ``{step, elapsed_s, **scalars}`` to log.jsonl; TensorBoard tags ``group/name``."""
        if self.writer is None:
            return
        for name, value in scalars.items():
            self.writer.add_scalar(f"{group}/{name}", value, step)
        with open(self.path, "a") as handle:
            handle.write(json.dumps({"step": step, "elapsed_s": elapsed_s, **scalars}) + "\n")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def learning_rate(config: ExperimentConfig, step: int) -> float:
    """The outer learning rate for ``step``: a pure function of the step, so resuming needs
    no scheduler state."""
    train = config.train
    if train.lr_schedule == "linear":
        return train.lr * max(0.0, 1.0 - step / train.steps)
    if train.lr_schedule == "step":
        return train.lr * (0.5 ** (step // train.lr_decay_every) if train.lr_decay_every else 1.0)
    raise RunError(f"train.lr_schedule={train.lr_schedule!r}: expected 'step' or 'linear'")


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_resumable(saved: dict[str, Any], current: dict[str, Any], where: Path) -> None:
    """Refuse to resume when the config differs from the checkpoint's beyond
    :data:`RESUMABLE_CHANGES` (also used by ``attnmeta.rl``)."""
    old, new = _flatten(saved), _flatten(current)
    differing = [k for k in sorted(set(old) | set(new))
                 if old.get(k) != new.get(k) and not k.startswith(RESUMABLE_CHANGES + ("eval.",))]
    if differing:
        shown = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in differing[:4])
        raise RunError(f"cannot resume {where}: the config differs from the checkpoint's "
                       f"({shown}); expected the same config (or a new --out folder)")


def train_run(config: ExperimentConfig, run_dir: Path, resume: bool = False,
              progress: bool = True, command: str = "",
              on_step_end: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Meta-train as configured, checkpointing into ``run_dir``; resumable after a kill.

    Episode ``i`` of training depends only on ``(config.seed, i)`` and every RNG state is
    checkpointed, so a resumed run reaches the same weights as an uninterrupted one.
    """
    run_dir = Path(run_dir)
    config_dict = config_to_dict(config)
    context = init_from_environment()
    shard = shard_range(config.train.meta_batch, context)
    existing = latest_checkpoint(run_dir)
    if existing is not None and not resume:
        raise RunError(f"run folder {run_dir} already holds checkpoints: pass --resume to "
                       "continue it, or --out NEW_FOLDER for a new run")
    torch.manual_seed(config.seed)
    learner = build_learner(config)
    optimizer = build_optimizer(config, learner)
    learning_rate(config, 0)  # reject an unknown schedule before any work
    start_step, elapsed = 0, 0.0
    if existing is not None:
        saved = json.loads(existing.read_text())
        check_resumable(saved["config"], config_dict, existing)
        record = load_checkpoint(existing, learner, optimizer, restore_rng=True)
        start_step, elapsed = record["step"], record.get("elapsed_s", 0.0)
    broadcast_parameters(learner)
    if context.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(run_dir / "config.yaml",
                           yaml.safe_dump(config_dict, sort_keys=False).encode())

    tokenizer = None
    if config.data.dataset in TEXT_DATASETS:  # trained on meta-train text, saved with the run
        from attnmeta.runs.tokenizer import run_tokenizer

        tokenizer = run_tokenizer(config, run_dir, resuming=existing is not None,
                                  save=context.is_main)
    split = load_split(config, "train", tokenizer)
    steps, meta_batch = config.train.steps, config.train.meta_batch
    episodes = make_episodes(split, config.data.train, steps * meta_batch, config.seed)
    loader = DataLoader(episodes, batch_size=shard[1] - shard[0], collate_fn=collate_episodes,
                        sampler=ShardSampler(start_step, steps, meta_batch, shard),
                        num_workers=config.data.workers,
                        # its own generator: creating the iterator must not draw from the
                        # global RNG, or a resumed run would diverge from an unbroken one
                        generator=torch.Generator().manual_seed(config.seed))

    run_log = RunLog(run_dir, enabled=context.is_main)  # rank 0 logs its shard's metrics
    clock = {"start": time.perf_counter() - elapsed}

    def set_learning_rate(step: int) -> None:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step)

    def log(step: int, metrics: dict[str, float]) -> None:
        run_log.write(step, time.perf_counter() - clock["start"], metrics, "train")

    evaluating = bool(config.train.eval_every) and context.is_main
    eval_split = load_split(config, config.eval.split, tokenizer) if evaluating else None

    def evaluate_now(step: int) -> None:
        """Accuracy on the eval split, logged against training time (eval time excluded)."""
        began = time.perf_counter()
        values = evaluate_learner(learner, config, eval_split, config.data.test,
                                  config.train.eval_episodes, config.eval.seed)
        summary = summarize(values)
        clock["start"] += time.perf_counter() - began
        split_name = config.eval.split
        run_log.write(step, time.perf_counter() - clock["start"],
                      {f"{split_name}_accuracy": summary.mean, f"{split_name}_ci95": summary.ci95},
                      split_name)

    budget_s = 60 * config.train.max_minutes

    def step_end(step: int) -> None:
        set_learning_rate(step)
        if evaluating and step % config.train.eval_every == 0:
            evaluate_now(step)
        out_of_time = any_rank(budget_s > 0 and time.perf_counter() - clock["start"] >= budget_s)
        checkpoint_due = step % config.train.checkpoint_every == 0 or step == steps or out_of_time
        if checkpoint_due and context.is_main:
            save_checkpoint(run_dir, step, learner, optimizer, config_dict,
                            keep=config.train.keep_checkpoints,
                            extra={"elapsed_s": time.perf_counter() - clock["start"],
                                   "command": command})
        if on_step_end is not None:
            on_step_end(step)
        if out_of_time and step < steps:
            stopped["at"] = step
            raise _BudgetReached

    set_learning_rate(start_step)
    stopped: dict[str, int] = {}
    history: list[dict[str, float]] = []
    try:
        history = meta_train(learner, loader, optimizer, steps, start_step=start_step,
                             grad_clip=config.train.grad_clip, log_every=config.train.log_every,
                             progress=progress and context.is_main, description=config.name,
                             on_log=log, on_step_end=step_end,
                             backward_chunk=config.train.backward_chunk,
                             workers=config.train.workers)
    except _BudgetReached:
        pass
    finally:
        run_log.close()
    return {"run_dir": str(run_dir), "steps": stopped.get("at", steps), "resumed_from": start_step,
            "is_main_process": context.is_main,
            "stopped_by_time_budget": bool(stopped),
            "train_seconds": time.perf_counter() - clock["start"], "history": history}


def evaluate_learner(learner: MetaLearner, config: ExperimentConfig, split: LabelledImages,
                     shape: EpisodeConfig, episodes: int, seed: int, batch_size: int = 16,
                     progress: bool = False, description: str = "eval") -> np.ndarray:
    """Per-episode accuracy ``[episodes]`` on seeded episodes of ``split``."""
    if isinstance(learner, MAML) and shape.n_way != config.data.train.n_way:
        raise RunError(f"n_way={shape.n_way} at test but the {config.learner.name} head has "
                       f"{config.data.train.n_way} outputs: expected the training n_way")
    loader = DataLoader(make_episodes(split, shape, episodes, seed), batch_size=batch_size,
                        collate_fn=collate_episodes, generator=torch.Generator().manual_seed(seed))
    if progress:
        from tqdm.auto import tqdm

        loader = tqdm(loader, desc=description, dynamic_ncols=True)
    kwargs = {"steps": config.learner.eval_steps} if isinstance(learner, MAML) else {}
    was_training = learner.training
    learner.eval()
    try:
        return per_task_metric(lambda b: learner.predict_batch(b, **kwargs), loader, accuracy)
    finally:
        learner.train(was_training)


def load_run(checkpoint: Path, data_root: str | None = None
             ) -> tuple[ExperimentConfig, MetaLearner, dict[str, Any]]:
    """(config, learner with the checkpoint's weights, checkpoint record) of a run; for a
    text run, ``learner.tokenizer`` is the tokenizer saved in its folder."""
    json_path = resolve_checkpoint(Path(checkpoint))
    try:
        config = config_from_dict(json.loads(json_path.read_text())["config"])
    except (KeyError, json.JSONDecodeError) as error:
        raise CheckpointError(f"checkpoint {json_path} has no readable config ({error})") from None
    if data_root is not None:
        config.data.root = data_root
    learner = build_learner(config)
    record = load_checkpoint(json_path, learner)
    record["path"] = str(json_path)
    if config.data.dataset in TEXT_DATASETS:
        from attnmeta.runs.tokenizer import load_run_tokenizer

        learner.tokenizer = load_run_tokenizer(json_path.parent.parent)
    return config, learner, record


def evaluate_checkpoint(checkpoint: Path, episodes: int | None = None, seed: int | None = None,
                        split: str | None = None, data_root: str | None = None,
                        n_way: int | None = None, k_shot: int | None = None,
                        batch_size: int = 16, command: str = "",
                        progress: bool = False) -> dict[str, Any]:
    """Accuracy (mean ± 95% CI) over a fixed, seeded set of test episodes; writes JSON."""
    config, learner, record = load_run(checkpoint, data_root)
    json_path = Path(record["path"])
    learner.eval()
    split = split or config.eval.split
    episodes = episodes or config.eval.episodes
    seed = config.eval.seed if seed is None else seed
    shape = EpisodeConfig(n_way or config.data.test.n_way, k_shot or config.data.test.k_shot,
                          config.data.test.q_query)
    values = evaluate_learner(learner, config,
                              load_split(config, split, getattr(learner, "tokenizer", None)),
                              shape, episodes, seed,
                              batch_size, progress, description=f"eval {split}")
    summary = summarize(values)
    result = {
        "command": command, "checkpoint": str(json_path), "step": record["step"],
        "learner": config.learner.name, "split": split, "n_way": shape.n_way,
        "k_shot": shape.k_shot, "q_query": shape.q_query, "episodes": episodes,
        "episode_seed": seed, "accuracy": summary.mean, "ci95": summary.ci95, "std": summary.std,
    }
    out = json_path.parent.parent / f"eval_{split}_{shape.n_way}w{shape.k_shot}s.json"
    atomic_write_bytes(out, json.dumps(result, indent=2).encode())
    result["written_to"] = str(out)
    return result
