"""Configuration of a meta-RL run: typed dataclasses read from YAML with ``key=value`` overrides.

An RL config is marked by a top-level ``kind: rl``; ``attnmeta train`` and ``attnmeta
eval`` read that key to hand the run to :mod:`attnmeta.runs.rl`. Parsing, type
checks and overrides are the image configs' (:mod:`attnmeta.runs.config`); :func:`validate`
adds the checks on values (a horizon of 0, an unknown learner, ...), each a one-line
:class:`~attnmeta.runs.config.ConfigError` naming the key and the bad value.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

# The image configs' schema builder: same YAML typing rules and messages for both kinds.
from attnmeta.runs.config import ConfigError, apply_overrides, build_section

__all__ = ["RLEnvConfig", "RLPolicyConfig", "RLLearnerConfig", "RLTrainConfig", "RLEvalConfig",
           "RLConfig", "load_rl_config", "rl_config_from_dict", "rl_config_to_dict", "validate",
           "is_rl_config_file"]


@dataclass
class RLEnvConfig:
    name: str = "navigation2d"           # navigation2d | bandit
    horizon: int = 100                   # steps per episode (MAML: H = 100)
    goal_low: float = -0.5               # navigation2d: goals uniform in [low, high]²
    goal_high: float = 0.5
    max_speed: float = 0.1               # navigation2d: velocity clipped to ±max_speed
    goal_tolerance: float = 0.01         # navigation2d: episode ends inside this box
    arms: int = 5                        # bandit
    context_dim: int = 0                 # bandit: 0 = multi-armed, d > 0 = contextual


@dataclass
class RLPolicyConfig:
    kind: str = "mlp"                    # mlp | attention
    hidden: list[int] = field(default_factory=lambda: [100, 100])
    init_log_std: float = 0.0
    window: int = 16                     # attention: live steps of history attended to
    d_model: int = 32
    heads: int = 2


@dataclass
class RLLearnerConfig:
    name: str = "maml"                   # maml | fomaml | pretrained | incontext
    inner_lr: float = 0.1
    inner_steps: int = 1                 # maml, fomaml: policy-gradient steps per task
    episodes_per_task: int = 20
    trial_episodes: int = 1              # incontext: episodes per trial (history carried)
    gamma: float = 0.99
    baseline: str = "linear"             # linear | none
    normalize_advantages: bool = True
    estimator: str = "lvc"               # lvc | vpg


@dataclass
class RLTrainConfig:
    steps: int = 300
    meta_batch: int = 20
    lr: float = 1e-3
    grad_clip: float | None = None
    log_every: int = 10
    checkpoint_every: int = 50
    keep_checkpoints: int = 2
    max_minutes: float = 0.0             # stop (with a checkpoint) after this much training
    threads: int = 1                     # torch threads: small ops run fastest on one


@dataclass
class RLEvalConfig:
    tasks: int = 100                     # held-out tasks (goals)
    seed: int = 1234
    steps: int = 3                       # adaptation steps (incontext: episodes - 1)
    episodes_per_task: int = 40          # per step (MAML's evaluation: 40)
    step_sizes: list[float] = field(default_factory=lambda: [0.1, 0.05, 0.05])


@dataclass
class RLConfig:
    kind: str = "rl"
    name: str = "rl"
    seed: int = 0
    env: RLEnvConfig = field(default_factory=RLEnvConfig)
    policy: RLPolicyConfig = field(default_factory=RLPolicyConfig)
    learner: RLLearnerConfig = field(default_factory=RLLearnerConfig)
    train: RLTrainConfig = field(default_factory=RLTrainConfig)
    eval: RLEvalConfig = field(default_factory=RLEvalConfig)


def _require(ok: bool, key: str, value: Any, expected: str) -> None:
    if not ok:
        raise ConfigError(f"config key '{key}' is {value!r}: expected {expected}")


def validate(config: RLConfig) -> RLConfig:
    """Reject values the learner cannot run with; returns ``config``."""
    env, policy, learner = config.env, config.policy, config.learner
    train, evaluation = config.train, config.eval
    _require(config.kind == "rl", "kind", config.kind, "'rl'")
    _require(env.name in ("navigation2d", "bandit"), "env.name", env.name,
             "'navigation2d' or 'bandit'")
    _require(env.horizon > 0, "env.horizon", env.horizon, "a positive number of steps")
    _require(env.goal_low < env.goal_high, "env.goal_low", env.goal_low,
             f"less than env.goal_high ({env.goal_high})")
    _require(env.max_speed > 0, "env.max_speed", env.max_speed, "> 0")
    _require(env.arms >= 2, "env.arms", env.arms, "at least 2")
    _require(env.context_dim >= 0, "env.context_dim", env.context_dim, ">= 0")
    _require(policy.kind in ("mlp", "attention"), "policy.kind", policy.kind,
             "'mlp' or 'attention'")
    _require(all(w > 0 for w in policy.hidden), "policy.hidden", policy.hidden, "positive widths")
    _require(policy.window >= 1, "policy.window", policy.window, "at least 1")
    _require(policy.heads >= 1 and policy.d_model % policy.heads == 0, "policy.heads",
             policy.heads, f"a divisor of policy.d_model ({policy.d_model})")
    _require(learner.name in ("maml", "fomaml", "pretrained", "incontext"), "learner.name",
             learner.name, "one of maml, fomaml, pretrained, incontext")
    _require(learner.name != "incontext" or policy.kind == "attention", "policy.kind",
             policy.kind, "'attention' for learner.name='incontext' (it adapts by attending)")
    _require(learner.inner_steps >= (1 if learner.name in ("maml", "fomaml") else 0),
             "learner.inner_steps", learner.inner_steps, ">= 1 for MAML")
    _require(learner.episodes_per_task >= 1, "learner.episodes_per_task",
             learner.episodes_per_task, ">= 1")
    _require(learner.trial_episodes >= 1, "learner.trial_episodes", learner.trial_episodes,
             ">= 1")
    _require(0.0 <= learner.gamma <= 1.0, "learner.gamma", learner.gamma, "a discount in [0, 1]")
    _require(learner.baseline in ("linear", "none"), "learner.baseline", learner.baseline,
             "'linear' or 'none'")
    _require(learner.estimator in ("lvc", "vpg"), "learner.estimator", learner.estimator,
             "'lvc' or 'vpg'")
    _require(learner.inner_lr > 0, "learner.inner_lr", learner.inner_lr, "> 0")
    _require(train.steps >= 0, "train.steps", train.steps, ">= 0")
    _require(train.meta_batch >= 1, "train.meta_batch", train.meta_batch, ">= 1")
    _require(train.lr > 0, "train.lr", train.lr, "> 0")
    _require(train.log_every >= 1, "train.log_every", train.log_every, ">= 1")
    _require(train.checkpoint_every >= 1, "train.checkpoint_every", train.checkpoint_every, ">= 1")
    _require(train.threads >= 0, "train.threads", train.threads, ">= 0 (0 = torch's default)")
    _require(evaluation.tasks >= 2, "eval.tasks", evaluation.tasks,
             "at least 2 (for a confidence interval)")
    _require(evaluation.steps >= 0, "eval.steps", evaluation.steps, ">= 0")
    _require(evaluation.episodes_per_task >= 1, "eval.episodes_per_task",
             evaluation.episodes_per_task, ">= 1")
    _require(learner.name == "incontext" or len(evaluation.step_sizes) >= evaluation.steps,
             "eval.step_sizes", evaluation.step_sizes,
             f"at least eval.steps ({evaluation.steps}) step sizes")
    return config


def rl_config_from_dict(values: Mapping[str, Any]) -> RLConfig:
    return validate(build_section(RLConfig, values, ""))


def rl_config_to_dict(config: RLConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist: expected a YAML file")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} holds {type(values).__name__}: expected a mapping")
    return values


def is_rl_config_file(path: str | Path) -> bool:
    """True when a YAML file exists and says ``kind: rl`` at its top level."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        return False
    return isinstance(values, dict) and values.get("kind") == "rl"


def load_rl_config(path: str | Path, overrides: Sequence[str] = ()) -> RLConfig:
    """Read an RL YAML config, apply ``key=value`` overrides, validate."""
    return rl_config_from_dict(apply_overrides(_read_yaml(Path(path)), overrides))
