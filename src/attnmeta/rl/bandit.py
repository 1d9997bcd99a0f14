"""Multi-armed and contextual Bernoulli bandits: a fast sanity check for meta-RL learners.

A task is one bandit. With ``context_dim = 0`` it is a ``K``-armed Bernoulli bandit whose
arm probabilities are uniform in ``[0, 1]`` (the family Duan et al., "RL²: Fast
Reinforcement Learning via Slow Reinforcement Learning", 2016, https://arxiv.org/abs/1611.02779,
meta-train on); the observation is a constant 1. With ``context_dim = d`` every step shows
a context ``c ~ N(0, I_d)`` and arm ``a`` pays 1 with probability ``sigmoid(w_a · c)``,
``w_a ~ N(0, I_d)`` per task. An episode is ``horizon`` pulls; nothing terminates early.
"""

from __future__ import annotations

import torch
from torch import Tensor

from attnmeta.rl.registry import register_task_family

__all__ = ["BanditTasks", "BanditBatch"]


class BanditBatch:
    """``T`` bandits × ``E`` episodes (see :class:`BanditTasks`)."""

    def __init__(self, tasks: Tensor, episodes: int, arms: int, context_dim: int,
                 generator: torch.Generator) -> None:
        self.tasks, self.episodes = tasks, episodes
        self.arms, self.context_dim = arms, context_dim
        self.generator = generator
        self.context = self._draw_context()

    def _draw_context(self) -> Tensor:
        shape = (self.tasks.shape[0], self.episodes)
        if self.context_dim == 0:
            return self.tasks.new_ones(*shape, 1)
        return torch.randn(*shape, self.context_dim, generator=self.generator,
                           dtype=self.tasks.dtype)

    def arm_probabilities(self) -> Tensor:
        """Pay-off probability of every arm in the current context, ``[T, E, K]``."""
        if self.context_dim == 0:
            return self.tasks[:, None, :].expand(-1, self.episodes, -1)
        weights = self.tasks.view(-1, self.arms, self.context_dim)       # [T, K, d]
        return torch.sigmoid(torch.einsum("tkd,ted->tek", weights, self.context))

    def reset(self) -> Tensor:
        self.context = self._draw_context()
        return self.context.clone()

    def step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Arm indices ``[T, E]`` -> (next context, 0/1 rewards ``[T, E]``, all-False)."""
        chosen = self.arm_probabilities().gather(-1, actions.long()[..., None])[..., 0]
        reward = (torch.rand(chosen.shape, generator=self.generator, dtype=chosen.dtype)
                  < chosen).to(chosen.dtype)
        self.context = self._draw_context()
        return self.context.clone(), reward, torch.zeros_like(reward, dtype=torch.bool)


class BanditTasks:
    """Family of ``arms``-armed Bernoulli bandits, optionally contextual (``context_dim > 0``)."""

    discrete = True
    action_low = action_high = 0.0   # unused: discrete actions are arm indices

    def __init__(self, arms: int = 5, horizon: int = 10, context_dim: int = 0) -> None:
        if arms < 2:
            raise ValueError(f"arms={arms}: expected at least 2")
        if horizon <= 0:
            raise ValueError(f"horizon={horizon}: expected a positive number of pulls")
        if context_dim < 0:
            raise ValueError(f"context_dim={context_dim}: expected >= 0")
        self.arms, self.horizon, self.context_dim = arms, horizon, context_dim
        self.action_dim = arms
        self.observation_dim = max(context_dim, 1)

    def sample_tasks(self, num_tasks: int, generator: torch.Generator,
                     dtype: torch.dtype = torch.float32) -> Tensor:
        """Arm probabilities ``[n, K]`` (multi-armed) or weights ``[n, K·d]`` (contextual)."""
        if self.context_dim == 0:
            return torch.rand(num_tasks, self.arms, generator=generator, dtype=dtype)
        return torch.randn(num_tasks, self.arms * self.context_dim, generator=generator,
                           dtype=dtype)

    def make_env(self, tasks: Tensor, episodes: int, generator: torch.Generator) -> BanditBatch:
        return BanditBatch(tasks, episodes, self.arms, self.context_dim, generator)


register_task_family("bandit", lambda env: BanditTasks(env.arms, env.horizon, env.context_dim))
