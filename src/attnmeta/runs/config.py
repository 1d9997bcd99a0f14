"""Experiment configuration: typed dataclasses, read from YAML, overridden by ``key=value``.

One YAML file under ``configs/`` per results-table row. ``attnmeta train CONFIG
train.steps=100 data.root=/data`` overrides any field with dotted keys; values are parsed
as YAML (``1e-3``, ``true``, ``[1, 2]``). The resolved config is saved beside the run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

__all__ = [
    "EpisodeConfig", "DataConfig", "ModelConfig", "LearnerConfig", "TrainConfig", "EvalConfig",
    "ExperimentConfig", "load_config", "apply_overrides", "config_from_dict", "config_to_dict",
    "ConfigError", "build_section",
]


class ConfigError(ValueError):
    """A config file or override that does not fit the schema."""


@dataclass
class EpisodeConfig:
    n_way: int = 5
    k_shot: int = 1
    q_query: int = 15


@dataclass
class DataConfig:
    dataset: str = "omniglot"            # omniglot | image_folder | clinc150 | banking77
    root: str | None = None              # data root; else $ATTNMETA_DATA, else the cache
    protocol: str = "vinyals"            # omniglot: vinyals | lake
    image_size: int = 28
    max_length: int = 48                 # text: tokens per sentence (longer ones are cut)
    vocab_size: int = 4000               # text: BPE vocabulary trained on the meta-train text
    train: EpisodeConfig = field(default_factory=lambda: EpisodeConfig(5, 1, 15))
    test: EpisodeConfig = field(default_factory=lambda: EpisodeConfig(5, 1, 15))
    workers: int = 0


@dataclass
class ModelConfig:
    backbone: str = "conv4"              # conv4 | vit | text_transformer | hf (text data sets)
    hidden: int = 64                     # conv channels; transformer width (d_model)
    norm: str = "batch"                  # batch: batch statistics (MAML); running: nn.BatchNorm2d
    depth: int = 4                       # transformer blocks (vit; incontext learner's reader)
    heads: int = 4                       # attention heads per block
    patch_size: int = 7                  # vit: square patches of this side
    dropout: float = 0.0                 # text_transformer: dropout in embeddings and blocks
    hf_path: str | None = None           # hf: local folder of a transformers model (None: tiny BERT)


@dataclass
class LearnerConfig:
    name: str = "protonet"               # maml | fomaml | reptile | protonet | matching | feat | incontext
    inner_lr: float = 0.4
    inner_steps: int = 1
    eval_steps: int = 3
    learn_inner_lr: bool = False
    adapt_only: list[str] | None = None
    strategy: str = "loop"
    inner_optimizer: str = "sgd"         # reptile: sgd | adam (beta1 = 0, as in the paper)
    distance: str = "sqeuclidean"        # protonet
    scale: float = 10.0                  # matching: cosine-similarity sharpening
    fce: bool = False                    # matching: full-context embeddings (LSTMs)
    fce_steps: int = 5                   # matching: attLSTM processing steps for the queries
    heads: int = 1                       # feat: set-to-set transformer heads
    dropout: float = 0.5                 # feat: dropout on the set-to-set attention output
    temperature: float = 1.0             # feat: divides the distance logits
    aux_temperature: float = 1.0         # feat: divides the regulariser's logits
    balance: float = 0.1                 # feat: weight of the contrastive regulariser


@dataclass
class TrainConfig:
    steps: int = 1000
    meta_batch: int = 1
    backward_chunk: int = 0              # tasks per backward pass (0 = all): less memory, same gradient
    workers: int = 1                     # threads sharing a meta-batch's chunks (task parallelism)
    optimizer: str = "adam"              # adam | sgd
    lr: float = 1e-3
    lr_decay_every: int = 0              # halve the learning rate every N steps (0 = never)
    lr_schedule: str = "step"            # step: halvings above; linear: to 0 at `steps` (Reptile)
    grad_clip: float | None = None
    log_every: int = 50
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    eval_every: int = 0                  # evaluate during training every N steps (0 = never)
    eval_episodes: int = 200             # episodes per evaluation during training
    max_minutes: float = 0.0             # stop (with a checkpoint) after this much training time


@dataclass
class EvalConfig:
    episodes: int = 1000
    seed: int = 1234
    split: str = "test"


@dataclass
class ExperimentConfig:
    name: str = "experiment"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def build_section(cls: type, values: Mapping[str, Any], path: str) -> Any:
    """A config dataclass ``cls`` from a nested mapping, refusing unknown keys and wrong types
    (``path``: the dotted name of the section, for the error). Shared with ``attnmeta.rl``."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"config section '{path or 'top level'}' is {values!r}: expected a mapping")
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        dotted = f"{path}.{key}" if path else key
        if key not in known:
            raise ConfigError(f"unknown config key '{dotted}': expected one of {sorted(known)}")
        default = getattr(cls(), key)
        if dataclasses.is_dataclass(default):
            kwargs[key] = build_section(type(default), value, dotted)
        else:
            kwargs[key] = _check_type(dotted, value, default)
    return cls(**kwargs)


def _check_type(dotted: str, value: Any, default: Any) -> Any:
    """Reject a value whose type plainly differs from the default's (ints pass as floats)."""
    if default is None or value is None:
        return value
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(value, bool) and isinstance(default, bool)
    elif isinstance(default, float):
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        ok = isinstance(value, (int, float))
        value = float(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(
            f"config key '{dotted}' is {value!r}: expected a {type(default).__name__}")
    return value


def config_from_dict(values: Mapping[str, Any]) -> ExperimentConfig:
    return build_section(ExperimentConfig, values, "")


def config_to_dict(config: ExperimentConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def apply_overrides(values: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Set ``a.b.c=value`` entries (value parsed as YAML) in a nested dict, in place."""
    for override in overrides:
        key, sep, raw = override.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {override!r}: expected key=value, e.g. train.steps=100")
        node = values
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {override!r}: '{part}' is not a section")
        node[leaf] = yaml.safe_load(raw)
    return values


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read a YAML config, apply ``key=value`` overrides, validate against the schema."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist: expected a YAML file")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    return config_from_dict(apply_overrides(values, overrides))
