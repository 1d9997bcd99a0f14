"""The interface a meta-RL task family offers the rollout code: sample tasks, batch them.

A *task family* is a distribution over tasks (2-D navigation goals, bandit arm
probabilities, ...). ``make_env(tasks, episodes)`` returns one vectorised environment
that steps every episode of every task at once: observations ``[T, E, obs_dim]``,
rewards and termination flags ``[T, E]``. Tasks are tensors ``[T, task_dim]``, so a batch
of tasks is sampled and checkpointed like any other tensor.

Continuous actions follow rllab's ``normalize`` convention, which Finn et al.'s MAML code
wraps around every environment: the policy acts in ``[-1, 1]`` per dimension and
:func:`attnmeta.rl.rollout.to_env_action` maps that onto ``[action_low, action_high]``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = ["VectorEnv", "TaskFamily"]


@runtime_checkable
class VectorEnv(Protocol):
    """``T`` tasks × ``E`` episodes stepped together."""

    def reset(self) -> Tensor:
        """Start a new episode everywhere; returns observations ``[T, E, obs_dim]``."""
        ...

    def step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``actions`` ``[T, E, action_dim]`` (continuous, in the environment's units) or
        ``[T, E]`` integer indices (discrete) -> ``(observations [T, E, obs_dim],
        rewards [T, E], terminated [T, E] bool)``."""
        ...


@runtime_checkable
class TaskFamily(Protocol):
    """What :func:`attnmeta.rl.rollout.sample_trajectories` needs from a family of tasks."""

    observation_dim: int
    action_dim: int          # continuous: size of an action; discrete: number of actions
    discrete: bool
    horizon: int             # steps per episode
    action_low: float        # continuous only: the box the normalised action maps onto
    action_high: float

    def sample_tasks(self, num_tasks: int, generator: torch.Generator,
                     dtype: torch.dtype = torch.float32) -> Tensor:
        """``[num_tasks, task_dim]`` tasks drawn with ``generator``."""
        ...

    def make_env(self, tasks: Tensor, episodes: int, generator: torch.Generator) -> VectorEnv:
        """A vectorised environment running ``episodes`` episodes of each task."""
        ...
