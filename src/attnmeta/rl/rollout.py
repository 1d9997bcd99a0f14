"""Sampling trajectories of many tasks at once, with one policy or one policy per task.

All ``T`` tasks × ``E`` episodes step together; a *trial* of ``N`` episodes runs them
back to back in the same task with the policy's history carried across episode
boundaries (what an in-context learner needs). Episodes that terminate early are padded
to the horizon; ``alive`` marks the steps that really happened.

The policy sees, at every step, its ``window`` most recent live tokens (a per-environment
buffer), which is exactly what the same policy computes for that step when it reads the
whole trajectory at once (see :func:`attnmeta.rl.policies.recent_history_mask`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch
from torch import Tensor, nn
from torch.func import functional_call

from attnmeta.errors import DivergedError
from attnmeta.rl.task_family import TaskFamily

__all__ = ["Trajectories", "PolicyForward", "sample_trajectories", "shared_forward",
           "per_task_forward", "to_env_action"]

PolicyForward = Callable[[Tensor], Tensor]
"""``tokens [T, E, w, F] ->`` the last step's distribution parameters ``[T, E, P]``."""


@dataclass
class Trajectories:
    """A batch of trials: ``T`` tasks × ``E`` trials × ``L = N·H`` steps.

    ``observations [T, E, L, obs_dim]`` (the state each action was taken in),
    ``tokens [T, E, L, F]`` (what the policy read at each step), ``actions [T, E, L, C]``,
    ``rewards [T, E, L]`` (0 on padding), ``alive [T, E, L]`` (1.0 where the step happened).
    """

    observations: Tensor
    tokens: Tensor
    actions: Tensor
    rewards: Tensor
    alive: Tensor
    episode_length: int

    @property
    def trial_episodes(self) -> int:
        return self.rewards.shape[-1] // self.episode_length

    def episode_returns(self) -> Tensor:
        """Undiscounted return of every episode, ``[T, E, N]``."""
        return self.rewards.unflatten(-1, (self.trial_episodes, self.episode_length)).sum(-1)


def to_env_action(family: TaskFamily, action: Tensor) -> Tensor:
    """Policy action -> environment action. Discrete: the index ``[T, E]``. Continuous:
    rllab's ``normalize`` (used by Finn et al.'s code), ``[-1, 1]`` onto ``[low, high]``."""
    if family.discrete:
        return action[..., 0].long()
    unit = action.clamp(-1.0, 1.0)
    return family.action_low + (unit + 1.0) * 0.5 * (family.action_high - family.action_low)


def shared_forward(policy: nn.Module) -> PolicyForward:
    """Every task acts with the policy's own parameters."""
    return lambda tokens: policy(tokens, last_only=True)


def per_task_forward(policy: nn.Module, params: Mapping[str, Tensor],
                     frozen: Mapping[str, Tensor]) -> PolicyForward:
    """Task ``t`` acts with ``params[name][t]`` (e.g. its adapted weights) via ``torch.vmap``;
    ``frozen`` holds the policy's other tensors, shared by all tasks."""

    def one_task(task_params: dict[str, Tensor], tokens: Tensor) -> Tensor:
        return functional_call(policy, {**frozen, **task_params}, (tokens,), {"last_only": True})

    batched = torch.vmap(one_task)
    return lambda tokens: batched(dict(params), tokens)


@torch.no_grad()
def sample_trajectories(family: TaskFamily, policy: nn.Module, forward: PolicyForward,
                        tasks: Tensor, episodes: int, generator: torch.Generator,
                        trial_episodes: int = 1) -> Trajectories:
    """Run ``episodes`` trials of ``trial_episodes`` episodes in each of ``tasks [T, ...]``.

    ``policy`` supplies ``tokens``, ``window``, ``token_dim`` and ``distribution``;
    ``forward`` computes its outputs (shared or per-task parameters). All randomness comes
    from ``generator``, so a trajectory batch is a function of its seed.
    """
    if episodes < 1 or trial_episodes < 1:
        raise ValueError(f"episodes={episodes}, trial_episodes={trial_episodes}: expected >= 1")
    distribution = policy.distribution
    num_tasks, dtype = tasks.shape[0], tasks.dtype
    env = family.make_env(tasks, episodes, generator)
    history = tasks.new_zeros(num_tasks, episodes, policy.window, policy.token_dim)
    previous_action = tasks.new_zeros(num_tasks, episodes, distribution.feature_dim)
    previous_reward = tasks.new_zeros(num_tasks, episodes)
    record: dict[str, list[Tensor]] = {k: [] for k in
                                       ("observations", "tokens", "actions", "rewards", "alive")}
    for _ in range(trial_episodes):
        observation = env.reset()
        alive = torch.ones(num_tasks, episodes, dtype=torch.bool)
        for step in range(family.horizon):
            start = tasks.new_full((num_tasks, episodes), 1.0 if step == 0 else 0.0)
            token = policy.tokens(observation, previous_action, previous_reward, start,
                                  alive.to(dtype))
            shifted = torch.cat([history[:, :, 1:], token[:, :, None]], dim=2)
            history = torch.where(alive[..., None, None], shifted, history)
            outputs = forward(history)
            if not bool(torch.isfinite(outputs).all()):
                raise DivergedError(
                    "the policy's outputs are not finite: expected finite weights (lower "
                    "learner.inner_lr or train.lr, or set train.grad_clip)")
            action = distribution.sample(outputs, generator)
            next_observation, reward, terminated = env.step(to_env_action(family, action))
            reward = reward.to(dtype) * alive
            for key, value in (("observations", observation), ("tokens", token),
                               ("actions", action), ("rewards", reward),
                               ("alive", alive.to(dtype))):
                record[key].append(value)
            # A history policy remembers the last step that really happened.
            previous_action = torch.where(alive[..., None], distribution.action_features(action),
                                          previous_action)
            previous_reward = torch.where(alive, reward, previous_reward)
            alive = alive & ~terminated.to(alive.device)
            observation = next_observation.to(dtype)
    return Trajectories(**{k: torch.stack(v, dim=2) for k, v in record.items()},
                        episode_length=family.horizon)
