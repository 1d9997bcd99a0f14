"""MAML's 2-D navigation task family: a point agent moves in the plane toward a goal.

Finn, Abbeel & Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
Networks", ICML 2017, §5.3 (https://arxiv.org/abs/1703.03400): "a point agent must move
to different goal positions in 2D, randomly chosen for each task within a unit square.
The observation is the current 2D position, and actions correspond to velocity commands
clipped to be in the range [−0.1, 0.1]. The reward is the negative squared distance to
the goal, and episodes terminate when the agent is within 0.01 of the goal or at the
horizon of H = 100."

Where the paper's text and its code differ, this module follows the code,
cbfinn/maml_rl ``maml_examples/point_env_randgoal.py``
(https://github.com/cbfinn/maml_rl/blob/master/maml_examples/point_env_randgoal.py),
which tristandeleu/pytorch-maml-rl ``maml_rl/envs/navigation.py`` also follows:

- goals uniform in ``[-0.5, 0.5]²``, the agent starts at the origin;
- reward ``-‖position - goal‖`` (the distance, not its square). The paper's own numbers
  agree with the code: its Table 4 gives MAML's return before adaptation as -40.41, close
  to an agent that stays at the origin (``-100 · E‖goal‖ ≈ -38.3``), whereas with squared
  distances that agent would score ``-100 · E‖goal‖² ≈ -16.7``;
- "within 0.01" is ``|dx| < 0.01 and |dy| < 0.01`` (a box), tested after the move, and the
  reward of that last step is still paid.

:class:`Navigation2D` is the vectorised torch family used for training (all tasks and
episodes step together); :class:`Navigation2DEnv` is the same dynamics as a single
Gymnasium environment, for users who want the standard ``reset`` / ``step`` API or who
plug their own Gymnasium tasks in with :class:`attnmeta.rl.gymnasium_tasks.GymnasiumTasks`.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
import torch
from torch import Tensor

from attnmeta.rl.registry import register_task_family

__all__ = ["Navigation2D", "NavigationBatch", "Navigation2DEnv"]


class NavigationBatch:
    """Point agents for ``T`` goals × ``E`` episodes (see :class:`Navigation2D`)."""

    def __init__(self, goals: Tensor, episodes: int, max_speed: float,
                 goal_tolerance: float) -> None:
        self.goals = goals[:, None, :]                       # [T, 1, 2]
        self.episodes = episodes
        self.max_speed, self.goal_tolerance = max_speed, goal_tolerance
        self.position = goals.new_zeros(goals.shape[0], episodes, 2)

    def reset(self) -> Tensor:
        """Every agent back at the origin; returns positions ``[T, E, 2]``."""
        self.position = self.goals.new_zeros(self.goals.shape[0], self.episodes, 2)
        return self.position.clone()

    def step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Velocities ``[T, E, 2]`` (clipped to ``±max_speed``) -> (positions ``[T, E, 2]``,
        rewards ``-distance [T, E]``, terminated ``[T, E]``)."""
        velocity = actions.clamp(-self.max_speed, self.max_speed)
        self.position = self.position + velocity
        offset = self.position - self.goals
        reward = -offset.pow(2).sum(-1).sqrt()
        terminated = (offset.abs() < self.goal_tolerance).all(-1)
        return self.position.clone(), reward, terminated


class Navigation2D:
    """The 2-D navigation task family, vectorised over tasks and episodes in torch.

    Tasks are goals ``[T, 2]`` uniform in ``[goal_low, goal_high]²``. Defaults are the
    paper's: horizon 100, goals in ``[-0.5, 0.5]²``, speed clipped to 0.1, goal box 0.01.
    """

    observation_dim = 2
    action_dim = 2
    discrete = False

    def __init__(self, horizon: int = 100, goal_low: float = -0.5, goal_high: float = 0.5,
                 max_speed: float = 0.1, goal_tolerance: float = 0.01) -> None:
        if horizon <= 0:
            raise ValueError(f"horizon={horizon}: expected a positive number of steps")
        if not goal_low < goal_high:
            raise ValueError(f"goal_low={goal_low}, goal_high={goal_high}: expected low < high")
        if max_speed <= 0:
            raise ValueError(f"max_speed={max_speed}: expected > 0")
        self.horizon = horizon
        self.goal_low, self.goal_high = goal_low, goal_high
        self.max_speed, self.goal_tolerance = max_speed, goal_tolerance
        self.action_low, self.action_high = -max_speed, max_speed

    def sample_tasks(self, num_tasks: int, generator: torch.Generator,
                     dtype: torch.dtype = torch.float32) -> Tensor:
        """Goals ``[num_tasks, 2]``, uniform in the square."""
        unit = torch.rand(num_tasks, 2, generator=generator, dtype=dtype)
        return self.goal_low + (self.goal_high - self.goal_low) * unit

    def make_env(self, tasks: Tensor, episodes: int,
                 generator: torch.Generator | None = None) -> NavigationBatch:
        """The dynamics are deterministic, so ``generator`` is unused."""
        return NavigationBatch(tasks, episodes, self.max_speed, self.goal_tolerance)


class Navigation2DEnv(gymnasium.Env):
    """One 2-D navigation episode with the Gymnasium API (same dynamics as :class:`Navigation2D`).

    ``reset(seed=..., options={"goal": (x, y)})`` sets the task; without a goal the first
    reset draws one uniformly from ``self.np_random`` and later resets keep it (a task is
    fixed across its episodes). ``step`` returns ``terminated`` when the agent is inside
    the goal box and ``truncated`` at the horizon.
    """

    metadata = {"render_modes": []}

    def __init__(self, goal: tuple[float, float] | None = None, horizon: int = 100,
                 goal_low: float = -0.5, goal_high: float = 0.5, max_speed: float = 0.1,
                 goal_tolerance: float = 0.01) -> None:
        super().__init__()
        self.family = Navigation2D(horizon, goal_low, goal_high, max_speed, goal_tolerance)
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = gymnasium.spaces.Box(-max_speed, max_speed, (2,), np.float32)
        self.goal = None if goal is None else np.asarray(goal, dtype=np.float64)
        self._position = np.zeros(2)
        self._steps = 0

    def sample_tasks(self, num_tasks: int) -> np.ndarray:
        """Goals ``[num_tasks, 2]`` drawn from ``self.np_random``."""
        return self.np_random.uniform(self.family.goal_low, self.family.goal_high, (num_tasks, 2))

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if options is not None and "goal" in options:
            self.goal = np.asarray(options["goal"], dtype=np.float64)
        elif self.goal is None:
            self.goal = self.sample_tasks(1)[0]
        self._position = np.zeros(2)
        self._steps = 0
        return self._position.astype(np.float32), {"goal": self.goal.copy()}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self.goal is None:
            raise RuntimeError("step() before reset(): call reset() first")
        speed = self.family.max_speed
        self._position = self._position + np.clip(np.asarray(action, np.float64), -speed, speed)
        self._steps += 1
        offset = self._position - self.goal
        distance = float(np.sqrt((offset ** 2).sum()))
        terminated = bool((np.abs(offset) < self.family.goal_tolerance).all())
        truncated = self._steps >= self.family.horizon and not terminated
        return (self._position.astype(np.float32), -distance, terminated, truncated,
                {"goal": self.goal.copy(), "distance": distance})


register_task_family("navigation2d", lambda env: Navigation2D(
    env.horizon, env.goal_low, env.goal_high, env.max_speed, env.goal_tolerance))
