"""Config -> objects: the registries of data sets, backbones and learners, and the
functions that build a run's split, episodes, model, learner and optimiser from them.

Adding a learner is its own file under ``learners/`` ending in one
:func:`~attnmeta.learners.registry.register_learner` line (:data:`LEARNERS`); adding a data
set is its loader under ``tasks/`` ending in one
:func:`~attnmeta.tasks.registry.register_dataset` line (:data:`DATASETS`); a backbone, its
model file under ``models/`` ending in one :func:`register_backbone` line
(:mod:`attnmeta.models.registry`, whose entries declare what the config rules ask of a
backbone). What a learner needs
from the model (a head of ``n_way`` outputs or plain features) is read from the learner
class's declared capabilities and the backbone class's (:mod:`attnmeta.models.capabilities`),
what a data set offers from its entry's fields, never from a name.

Every image backbone is built the same way around its factory (:func:`build_backbone`):
``data.normalize`` puts the input normalisation inside it, and a training run starts it
from ``model.pretrained_path``'s weights (a checkpoint read back does not need that file).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from attnmeta.learners.pretraining import SupervisedClassifier
from attnmeta.learners.frozen import FrozenFeatureLearner
from attnmeta.learners.maml import head_modules
from attnmeta.learners import MetaLearner
from attnmeta.learners.registry import (LEARNERS, Backbone, LearnerEntry,
                                        register_learner)
from attnmeta.models import FeatureHead
from attnmeta.models.capabilities import has_spatial_tokens
from attnmeta.models.spatial import SpatialTokens
from attnmeta.models.normalize import imagenet_normalization, normalize_inputs
from attnmeta.models.pretrained import load_pretrained, state_mismatch
from attnmeta.models.registry import (BACKBONES, TEXT_BACKBONES, BackboneEntry,
                                      register_backbone, register_text_backbone)
from attnmeta.runs.config import ConfigError, EpisodeConfig, ExperimentConfig
from attnmeta.tasks import FewShotEpisodes, LabelledSplit
from attnmeta.tasks.augment import AUGMENTATIONS, AugmentedEpisodes
from attnmeta.tasks.medmnist import download_medmnist
from attnmeta.tasks.registry import DATASETS, DatasetEntry, dataset_named, register_dataset
from attnmeta.tasks.splits import class_groups
from attnmeta.tasks.text import tokenize_split

if TYPE_CHECKING:
    from attnmeta.bpe import TextTokenizer

__all__ = ["DatasetEntry", "LearnerEntry", "DATASETS", "download_dataset", "BACKBONES",
           "register_learner", "register_dataset", "Backbone",
           "TEXT_BACKBONES", "BackboneEntry", "register_text_backbone",
           "LEARNERS", "register_backbone", "dataset_entry", "is_text", "image_channels",
           "build_model", "build_learner", "build_optimizer", "load_split", "make_episodes",
           "training_episodes", "build_backbone", "build_classifier", "load_encoder_state"]


# ------------------------------------------------------------------------------ data sets
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


def dataset_entry(config: Any) -> DatasetEntry:
    """The entry of ``data.dataset`` (:mod:`attnmeta.tasks.registry`), whose fields declare
    what the data set offers."""
    return dataset_named(config.data.dataset)


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
    entry, data = dataset_entry(config), config.data
    if entry.texts is not None:
        if tokenizer is None:
            raise ValueError(f"data.dataset={data.dataset!r} is text: expected the run's "
                             "tokenizer to encode it")
        return tokenize_split(entry.texts(data.root, split), tokenizer, data.max_length)
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
        entry = _registered(TEXT_BACKBONES, "model.backbone", name,
                            f" for the text data set {config.data.dataset!r}")
        return entry.factory(model, config, out_dim)
    entry = _registered(BACKBONES, "model.backbone", name, " for images (add others with "
                        "attnmeta.runs.build.register_backbone)")
    channels = image_channels(config)
    backbone = entry.factory(model, channels, out_dim, config.data.image_size)
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
        model = load_encoder_state(build_model(config, pretrained), encoder_state, config)
        model, tokens = spatial_encoder(config, entry, model)
        return entry.build(config.learner, Backbone(model, config.model, **tokens))
    encoder = load_encoder_state(build_backbone(config, 0, pretrained), encoder_state, config)
    encoder, tokens = spatial_encoder(config, entry, encoder)
    head = FeatureHead(Backbone(encoder, config.model).width(config.learner.name),
                       config.data.train.n_way if entry.cls.needs_head else 0)
    return FrozenFeatureLearner(encoder, entry.build(config.learner,
                                                     Backbone(head, config.model, **tokens)))


def spatial_encoder(config: Any, entry: LearnerEntry, model: nn.Module
                    ) -> tuple[nn.Module, dict[str, Any]]:
    """``model`` as the learner reads it, and the token fields of its :class:`Backbone`:
    as it is where the learner class does not declare ``reads_spatial_tokens``; else its
    tokens flattened (:class:`SpatialTokens`, after the encoder state is loaded so that a
    pretrain run's keys fit; a frozen run caches those), normalised as ``data.normalize``
    says (the tokens bypass the backbone's forward, where its own normalisation runs)."""
    if not entry.cls.reads_spatial_tokens:
        return model, {}
    if not has_spatial_tokens(model):
        raise ConfigError(f"config key 'learner.name' is {config.learner.name!r}, which reads "
                          f"spatial tokens: expected a model.backbone whose class declares "
                          f"'spatial_tokens' (model.backbone={config.model.backbone!r}, "
                          f"{type(model).__name__}, does not; conv4, resnet12, vit and "
                          "efficientnet_lite0 do)")
    tokens = SpatialTokens(model, config.data.image_size)
    if config.data.normalize == "imagenet":
        tokens = normalize_inputs(tokens, imagenet_normalization(image_channels(config)))
    return tokens, {"token_grid": tokens.grid, "token_dim": tokens.token_dim}


def load_encoder_state(model: nn.Module, state: dict | None, config: Any) -> nn.Module:
    """``model`` with the encoder weights ``state`` (of ``config.model.init``) loaded; its
    fresh head (``head.*``, ``encoder.head.*``) is all it may have besides. A ConfigError
    names both when they differ."""
    if state is None:
        return model
    # the classification head is fresh
    heads = tuple(f"{name}." for name in head_modules(model))
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
    return SupervisedClassifier(encoder, Backbone(encoder, config.model).width("pretrain"),
                                num_classes,
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
