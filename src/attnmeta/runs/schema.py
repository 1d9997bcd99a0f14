"""What a run's config may hold: one dataclass per section, each key with its default and
the values it accepts.

Every key declares its range (``setting(default, at_least=..., choices=...)``), so
:mod:`attnmeta.runs.config` checks every value of every section the same way before a
run does any work, and the message names the key. Names that registries own (a data
set, a backbone, a learner) are checked where the registry is, in
:mod:`attnmeta.runs.build`. The built-in run kinds' schemas (:mod:`attnmeta.runs.kinds`):
episodic runs on images or text (no ``kind:``, or ``kind: episodic``), meta-RL runs
(``kind: rl``), and supervised pretraining of an encoder on the classes of the train split
(``kind: pretrain``, :class:`PretrainConfig`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from attnmeta.learners.protonet import ProtoNetOptions
from attnmeta.learners.registry import LearnerOptions, learner_options
from attnmeta.models.registry import BACKBONES, TEXT_BACKBONES, BackboneEntry, backbone_entry
from attnmeta.rl.registry import POLICIES, RL_LEARNERS, TASK_FAMILIES
from attnmeta.settings import PROBABILITY, Limits, Variants, setting
from attnmeta.tasks.augment import AUGMENTATIONS
from attnmeta.tasks.omniglot import BACKGROUND_SETS
from attnmeta.tasks.registry import DATASETS
from attnmeta.train import PRECISIONS

__all__ = ["setting", "Limits", "EpisodeConfig", "DataConfig", "ModelConfig", "LearnerConfig",
           "ClassesTrainConfig", "TrainConfig", "EvalConfig", "ExperimentConfig", "RLEnvConfig",
           "RLPolicyConfig",
           "RLLearnerConfig", "RLTrainConfig", "RLEvalConfig", "RLConfig", "PretrainLearnerConfig",
           "PretrainTrainConfig", "PretrainEvalConfig", "PretrainConfig", "PLAIN_NAME"]

# A run's name becomes a folder under runs/: one path component, no "..", no separators.
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _episode(n_way: int, k_shot: int, q_query: int) -> Callable[[], "EpisodeConfig"]:
    return lambda: EpisodeConfig(n_way, k_shot, q_query)




def has_alphabets(data: "DataConfig") -> bool:
    """Whether ``data.dataset``'s entry declares alphabets for this data section (an
    unknown name has none; build names the registered ones)."""
    entry = DATASETS.get(data.dataset)
    return entry is not None and entry.has_alphabets(data)

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
    # omniglot, protocol lake: train/val from the full background set or a minimal 5-alphabet one
    background: str = setting("full", choices=lambda: tuple(BACKGROUND_SETS))
    # omniglot: "protocol" (vinyals rotates every split, lake none) or "train": lake's training
    # characters at 0/90/180/270 degrees as 4 classes each (val and test stay as drawn)
    rotations: str = setting("protocol", choices=("protocol", "train"))
    image_size: int = setting(28, at_least=16, at_most=1024)  # conv4, resnet12 halve it 4 times
    channels: int = setting(1, choices=(1, 3))    # images: read as grey (1) or RGB (3)
    # imagenet: the model starts with (x - mean) / std of ImageNet's channels (inputs in [0, 1])
    normalize: str = setting("none", choices=("none", "imagenet"))
    # training images through attnmeta.tasks.augment's function of that name (evaluation
    # never): flip_crop (RFS's flips and crops), affine (Koch et al.'s Omniglot distortions)
    augment: str = setting("none", choices=lambda: ("none", *AUGMENTATIONS))
    max_length: int = setting(48, at_least=1, at_most=4096)  # text: tokens per sentence
    vocab_size: int = setting(4000, at_least=300, at_most=1_000_000)  # text: BPE vocabulary
    train: EpisodeConfig = setting(factory=_episode(5, 1, 15))
    test: EpisodeConfig = setting(factory=_episode(5, 1, 15))
    workers: int = setting(0, at_least=0, at_most=64)  # DataLoader processes


def _backbones(declares: Callable[[BackboneEntry], bool]) -> list[str]:
    """The backbones (image and text) whose entries declare it (attnmeta.models.registry)."""
    return [name for name, entry in {**BACKBONES, **TEXT_BACKBONES}.items() if declares(entry)]


def _backbone_is(declares: Callable[[BackboneEntry], bool]) -> str:
    """``model.backbone='x'`` (or ``in ('x', 'y')``) for the backbones that declare it."""
    names = _backbones(declares)
    return (f"model.backbone={names[0]!r}" if len(names) == 1
            else f"model.backbone in ({', '.join(map(repr, names))})")


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
    # spatial tokens (relational learners): the map of this block before its pool, finer
    # the earlier (conv4 at 28 px: block 3 gives 7x7, block 4 3x3); 0: the backbone's last
    token_block: int = setting(0, at_least=0, at_most=16)


# The learner section: `learner.name` picks the dataclass of its keys, the options its
# registry entry names (attnmeta.learners.registry: the shared keys, and each learner's own
# in its file), so a new learner with new keys is its file and one registration line.
LearnerConfig = LearnerOptions
LEARNER_VARIANTS = Variants("name", learner_options, "learner")


@dataclass
class ClassesTrainConfig:
    """The train keys every run kind over classes shares (episodic and pretrain runs): the
    budget, the outer optimiser and its schedule, logging, checkpoints, in-training
    evaluation and model selection. Each kind's section adds its own keys."""

    steps: int = setting(1000, at_least=1)
    backward_chunk: int = setting(0, at_least=0)  # tasks (pretrain: examples) per backward
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


@dataclass
class TrainConfig(ClassesTrainConfig):
    """An episodic run's train section: the shared keys and the meta-batch's."""

    meta_batch: int = setting(1, at_least=1, at_most=100_000)
    workers: int = setting(1, at_least=1, at_most=256)  # threads sharing a meta-batch


def selection_rule(train: ClassesTrainConfig) -> tuple[bool, str, Any, str]:
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
    kind: ClassVar[str] = "episodic"              # not a key: files without `kind` are this kind
    name: str = setting("experiment", pattern=PLAIN_NAME)
    seed: int = setting(0, at_least=0)
    data: DataConfig = setting(factory=DataConfig)
    model: ModelConfig = setting(factory=ModelConfig)
    learner: LearnerOptions = setting(factory=ProtoNetOptions, variants=LEARNER_VARIANTS)
    train: TrainConfig = setting(factory=TrainConfig)
    eval: EvalConfig = setting(factory=EvalConfig)

    def cross_problems(self) -> list[tuple[str, Any, str]]:
        """Rules between keys, as ``(key, value, "expected ...")`` for each one broken."""
        model, data = self.model, self.data
        backbone = backbone_entry(model.backbone)  # what it declares, not its name
        rules = (
            (not backbone.patch_size_divides_image or data.image_size % model.patch_size == 0,
             "model.patch_size", model.patch_size, f"a divisor of data.image_size "
             f"({data.image_size}) for the {model.backbone} backbone"),
            (not backbone.heads_divide_hidden or model.hidden % model.heads == 0,
             "model.heads", model.heads, f"a divisor of model.hidden ({model.hidden})"),
            *((shape.within == "none" or has_alphabets(data),
               f"data.{where}.within", shape.within, "'none' unless data.dataset declares "
               "alphabets (omniglot with data.protocol='lake': within-alphabet episodes are "
               "for models trained on the background alphabets only, without rotations)")
              for where, shape in (("train", data.train), ("test", data.test))),
            (data.background == "full" or data.protocol == "lake", "data.background",
             data.background, "'full' unless data.protocol='lake' (the minimal background "
             "sets are Lake et al.'s; vinyals pools the full sets)"),
            (data.rotations == "protocol" or data.protocol == "lake", "data.rotations",
             data.rotations, "'protocol' unless data.protocol='lake' (vinyals already makes "
             "every split's rotations classes)"),
            (model.depth >= 1 or backbone.depth_optional,
             "model.depth", model.depth, f">= 1 (0, no layers, is for "
             f"{_backbone_is(lambda e: e.depth_optional)} with a learner other than "
             "'incontext', which reads model.depth too)"),
            (backbone.width is None or model.depth == 0 or backbone.width % model.heads == 0,
             "model.heads", model.heads, f"a divisor of {backbone.width}, {model.backbone}'s "
             "width"),
            (backbone.maps_sentences or not model.project, "model.project",
             model.project, f"false unless {_backbone_is(lambda e: e.maps_sentences)} (the "
             "map of its sentence vectors)"),
            (not backbone.wheel_tokenizer or model.hf_path is None, "model.hf_path",
             model.hf_path, f"unset for model.backbone={model.backbone!r} (its embeddings and "
             f"tokenizer come from the {model.backbone} wheel)"),
            (not model.freeze or model.init is not None or backbone.pretrained,
             "model.freeze", model.freeze, "false without model.init (the pretrain run whose "
             "encoder to freeze) unless model.backbone is pretrained ("
             + ", ".join(_backbones(lambda e: e.pretrained)) + ")"),
            (model.token_block <= backbone.token_blocks, "model.token_block",
             model.token_block, f"0 (its last map) or 1..{backbone.token_blocks} for "
             f"model.backbone={model.backbone!r}" if backbone.token_blocks else
             f"0 for model.backbone={model.backbone!r} (it hands over its last map only; "
             f"a block is chosen with {_backbone_is(lambda e: e.token_blocks > 0)})"),
            (model.train_blocks == 0 or (backbone.trains_blocks and not model.freeze),
             "model.train_blocks", model.train_blocks,
             f"0 unless {_backbone_is(lambda e: e.trains_blocks)} with model.freeze: false "
             "(the blocks it trains)"),
            (not model.freeze or model.norm == "running" or not backbone.norm_configurable,
             "model.norm", model.norm, "'running' with model.freeze: true (frozen features "
             "must not depend on the batch they are computed in)"),
            (not backbone.needs_timm_name or model.timm_name is not None, "model.timm_name",
             model.timm_name, "a timm model name (e.g. 'resnet18') for "
             f"model.backbone={model.backbone!r}"),
            (model.pretrained_path is None or model.init is None, "model.pretrained_path",
             model.pretrained_path, "null with model.init (the encoder comes from the "
             "pretrain run)"),
            (data.augment == "none" or not model.freeze, "data.augment", data.augment,
             "'none' with model.freeze: true (the frozen features are computed once, from "
             "the images as they are)"),
            selection_rule(self.train),
        )
        return ([(key, value, expected) for ok, key, value, expected in rules if not ok]
                + self.learner.problems(self))


# --------------------------------------------------------------------------- meta-RL runs
@dataclass
class RLEnvConfig:
    # registered in attnmeta.rl.registry (entries registered after import count too)
    name: str = setting("navigation2d", choices=lambda: tuple(TASK_FAMILIES))
    horizon: int = setting(100, at_least=1, at_most=100_000)  # steps per episode
    goal_low: float = -0.5                        # navigation2d: goals uniform in [low, high]²
    goal_high: float = 0.5
    max_speed: float = setting(0.1, above=0.0)    # navigation2d: velocity clipped to ±max_speed
    goal_tolerance: float = setting(0.01, at_least=0.0)
    arms: int = setting(5, at_least=2, at_most=100_000)  # bandit
    context_dim: int = setting(0, at_least=0, at_most=100_000)  # bandit: 0 = multi-armed


@dataclass
class RLPolicyConfig:
    # registered in attnmeta.rl.registry (entries registered after import count too)
    kind: str = setting("mlp", choices=lambda: tuple(POLICIES))
    hidden: list[int] = setting(factory=lambda: [100, 100], each=Limits(at_least=1))
    init_log_std: float = setting(0.0, at_least=-20.0, at_most=20.0)
    window: int = setting(16, at_least=1, at_most=100_000)  # attention: steps attended to
    d_model: int = setting(32, at_least=1, at_most=4096)
    heads: int = setting(2, at_least=1, at_most=64)


@dataclass
class RLLearnerConfig:
    # registered in attnmeta.rl.registry (entries registered after import count too)
    name: str = setting("maml", choices=lambda: tuple(RL_LEARNERS))
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
        learns, history = RL_LEARNERS[learner.name], POLICIES[policy.kind].reads_history
        attending = " or ".join(repr(name) for name, entry in POLICIES.items()
                                if entry.reads_history)
        rules = (
            (env.goal_low < env.goal_high, "env.goal_low", env.goal_low,
             f"less than env.goal_high ({env.goal_high})"),
            (policy.d_model % policy.heads == 0, "policy.heads", policy.heads,
             f"a divisor of policy.d_model ({policy.d_model})"),
            (not learns.in_context or history, "policy.kind", policy.kind,
             f"{attending} for learner.name={learner.name!r} (it adapts by attending)"),
            (learner.inner_steps >= 1 or not learns.adapts_by_gradient,
             "learner.inner_steps", learner.inner_steps, ">= 1 for MAML"),
            (learns.in_context or len(evaluation.step_sizes) >= evaluation.steps,
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
class PretrainTrainConfig(ClassesTrainConfig):
    """A pretrain run's train section: the shared keys and its batches of examples."""

    steps: int = setting(3000, at_least=1)
    batch_size: int = setting(256, at_least=1, at_most=65_536)  # examples per step
    weight_decay: float = setting(0.0, at_least=0.0, at_most=1.0)
    shift: int = setting(2, at_least=0, at_most=64)  # random shifts of up to this many pixels


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
