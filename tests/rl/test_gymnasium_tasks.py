"""attnmeta.rl.gymnasium_tasks: any Gymnasium environment as a vectorised task family."""

from __future__ import annotations

import numpy as np
import pytest
import torch

gymnasium = pytest.importorskip("gymnasium")

from attnmeta.errors import InputError  # noqa: E402
from attnmeta.rl.gymnasium_tasks import GymnasiumTasks  # noqa: E402
from attnmeta.rl.navigation import Navigation2D, Navigation2DEnv  # noqa: E402
from attnmeta.rl.rollout import sample_trajectories, shared_forward  # noqa: E402
from test_navigation import straight_policy  # noqa: E402


class Counter(gymnasium.Env):
    """Discrete: reward = the action taken + the task's offset; ends after action 2."""

    observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (1,), np.float64)
    action_space = gymnasium.spaces.Discrete(3)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.offset = float(options["task"][0])
        return np.zeros(1), {}

    def step(self, action):
        return np.array([float(action)]), action + self.offset, action == 2, False, {}


class Skewed(Counter):
    action_space = gymnasium.spaces.Box(np.array([-1.0, 0.0], np.float32),
                                        np.array([1.0, 1.0], np.float32))


def test_a_discrete_family_steps_each_task_and_episode_and_freezes_finished_ones():
    family = GymnasiumTasks(Counter, lambda n, rng: rng.uniform(size=(n, 1)), horizon=3)
    assert (family.discrete, family.action_dim, family.observation_dim) == (True, 3, 1)
    tasks = torch.tensor([[10.0], [20.0]])
    env = family.make_env(tasks, 2, torch.Generator().manual_seed(0))
    assert env.reset().shape == (2, 2, 1)
    observations, rewards, done = env.step(torch.tensor([[0, 2], [1, 2]]))
    assert rewards.tolist() == [[10.0, 12.0], [21.0, 22.0]]
    assert done.tolist() == [[False, True], [False, True]]
    _, rewards, _ = env.step(torch.tensor([[1, 1], [1, 1]]))
    assert rewards.tolist() == [[11.0, 0.0], [21.0, 0.0]]  # a finished episode stays put
    assert observations[:, :, 0].tolist() == [[0.0, 2.0], [1.0, 2.0]]


def test_tasks_are_drawn_from_the_torch_generator():
    family = GymnasiumTasks(Counter, lambda n, rng: rng.uniform(size=(n, 1)), horizon=3)
    first = family.sample_tasks(4, torch.Generator().manual_seed(5), torch.float64)
    assert first.shape == (4, 1) and first.dtype == torch.float64
    assert torch.equal(first, family.sample_tasks(4, torch.Generator().manual_seed(5),
                                                  torch.float64))
    assert not torch.equal(first, family.sample_tasks(4, torch.Generator().manual_seed(6),
                                                      torch.float64))


def test_unequal_action_bounds_and_bad_horizons_are_refused():
    with pytest.raises(InputError, match=r"expected the same bounds in every dimension"):
        GymnasiumTasks(Skewed, lambda n, rng: np.zeros((n, 1)), horizon=3)
    with pytest.raises(ValueError, match=r"horizon=0: expected a positive number"):
        GymnasiumTasks(Counter, lambda n, rng: np.zeros((n, 1)), horizon=0)


def test_gymnasium_adapter_reproduces_the_vectorised_family():
    family = Navigation2D(horizon=8)
    adapter = GymnasiumTasks(lambda: Navigation2DEnv(horizon=8),
                             lambda n, rng: rng.uniform(-0.5, 0.5, (n, 2)), horizon=8,
                             task_option="goal")
    assert (adapter.observation_dim, adapter.action_dim, adapter.discrete) == (2, 2, False)
    assert (adapter.action_low, adapter.action_high) == pytest.approx((-0.1, 0.1))
    goals = torch.tensor([[0.2, 0.2], [-0.3, 0.1]], dtype=torch.float64)
    policy = straight_policy()
    runs = [sample_trajectories(f, policy, shared_forward(policy), goals, 2,
                                torch.Generator().manual_seed(0)) for f in (family, adapter)]
    # float32 actions inside Gymnasium: equal up to single precision
    torch.testing.assert_close(runs[1].rewards, runs[0].rewards, atol=1e-6, rtol=0)
    assert torch.equal(runs[1].alive, runs[0].alive)
    assert runs[0].alive[0, 0].sum() == 2                  # the first goal is reached at step 2

