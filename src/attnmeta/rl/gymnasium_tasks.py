"""Any Gymnasium environment as a meta-RL task family, so users can bring their own tasks.

The environment must accept its task through ``reset(options={task_option: task})``
(as :class:`attnmeta.rl.navigation.Navigation2DEnv` does with ``"goal"``). Episodes are
stepped one environment at a time in Python, so this is for plugging tasks in, not for
speed: the built-in families are vectorised in torch.
"""

from __future__ import annotations

from typing import Callable

import gymnasium
import numpy as np
import torch
from torch import Tensor

from attnmeta.errors import InputError

__all__ = ["GymnasiumTasks", "GymnasiumBatch"]


class GymnasiumBatch:
    """``T × E`` Gymnasium environments behind the :class:`~attnmeta.rl.task_family.VectorEnv` API."""

    def __init__(self, family: "GymnasiumTasks", tasks: Tensor, episodes: int,
                 generator: torch.Generator) -> None:
        self.family, self.tasks, self.episodes = family, tasks, episodes
        self.envs = [family.make_gym_env() for _ in range(tasks.shape[0] * episodes)]
        self.seeds = torch.randint(2**31 - 1, (len(self.envs),), generator=generator).tolist()
        self.done = np.zeros(len(self.envs), dtype=bool)
        self.last_obs = np.zeros((len(self.envs), family.observation_dim))

    def _shaped(self, values: np.ndarray) -> Tensor:
        return torch.as_tensor(values, dtype=self.tasks.dtype).view(
            self.tasks.shape[0], self.episodes, *values.shape[1:])

    def reset(self) -> Tensor:
        for i, env in enumerate(self.envs):
            task = self.tasks[i // self.episodes].cpu().numpy()
            seed = self.seeds[i]
            self.seeds[i] = None  # seed on the first reset only, as Gymnasium recommends
            obs, _ = env.reset(seed=seed, options={self.family.task_option: task})
            self.last_obs[i] = np.asarray(obs, dtype=np.float64).reshape(-1)
        self.done[:] = False
        return self._shaped(self.last_obs.copy())

    def step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        flat = actions.detach().cpu().numpy().reshape(len(self.envs), *actions.shape[2:])
        rewards = np.zeros(len(self.envs))
        for i, env in enumerate(self.envs):
            if self.done[i]:  # finished episodes stay put; the rollout masks these steps
                continue
            action = int(flat[i]) if self.family.discrete else flat[i]
            obs, reward, terminated, _, _ = env.step(action)
            self.last_obs[i] = np.asarray(obs, dtype=np.float64).reshape(-1)
            rewards[i] = reward
            self.done[i] = terminated
        return (self._shaped(self.last_obs.copy()), self._shaped(rewards),
                torch.as_tensor(self.done.copy()).view(self.tasks.shape[0], self.episodes))


class GymnasiumTasks:
    """A task family made of a Gymnasium environment factory and a task sampler.

    Args:
        make_gym_env: builds one environment (Box or Discrete actions, Box observations).
        sample_tasks: ``(num_tasks, numpy Generator) -> [num_tasks, task_dim]`` array.
        horizon: steps per episode (the rollout stops there; ``truncated`` is not needed).
        task_option: the ``reset`` option key the environment reads its task from.
    """

    def __init__(self, make_gym_env: Callable[[], gymnasium.Env],
                 sample_tasks: Callable[[int, np.random.Generator], np.ndarray],
                 horizon: int, task_option: str = "task") -> None:
        if horizon <= 0:
            raise ValueError(f"horizon={horizon}: expected a positive number of steps")
        probe = make_gym_env()
        self.make_gym_env, self.task_sampler = make_gym_env, sample_tasks
        self.horizon, self.task_option = horizon, task_option
        self.observation_dim = int(np.prod(probe.observation_space.shape))
        space = probe.action_space
        if isinstance(space, gymnasium.spaces.Discrete):
            self.discrete, self.action_dim = True, int(space.n)
            self.action_low = self.action_high = 0.0
        elif isinstance(space, gymnasium.spaces.Box):
            low, high = np.unique(space.low), np.unique(space.high)
            if len(low) != 1 or len(high) != 1:
                raise InputError(f"action space {space}: expected the same bounds in every "
                                 "dimension (rescale the environment's actions)")
            self.discrete, self.action_dim = False, int(np.prod(space.shape))
            self.action_low, self.action_high = float(low[0]), float(high[0])
        else:
            raise InputError(f"action space {space}: expected Box or Discrete")
        probe.close()

    def sample_tasks(self, num_tasks: int, generator: torch.Generator,
                     dtype: torch.dtype = torch.float32) -> Tensor:
        rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=generator)))
        return torch.as_tensor(np.asarray(self.task_sampler(num_tasks, rng)), dtype=dtype)

    def make_env(self, tasks: Tensor, episodes: int, generator: torch.Generator) -> GymnasiumBatch:
        return GymnasiumBatch(self, tasks, episodes, generator)
