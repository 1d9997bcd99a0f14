"""attnmeta.rl.task_family: the protocols a task family and its environment satisfy."""

from __future__ import annotations

import torch

from attnmeta.rl.bandit import BanditTasks
from attnmeta.rl.navigation import Navigation2D
from attnmeta.rl.task_family import TaskFamily, VectorEnv


def test_the_built_in_families_and_their_environments_satisfy_the_protocols():
    for family in (Navigation2D(horizon=3), BanditTasks(arms=2, horizon=2)):
        assert isinstance(family, TaskFamily)
        tasks = family.sample_tasks(2, torch.Generator().manual_seed(0), torch.float64)
        env = family.make_env(tasks, 3, torch.Generator().manual_seed(0))
        assert isinstance(env, VectorEnv)
        observations = env.reset()
        assert observations.shape == (2, 3, family.observation_dim)


def test_an_object_without_the_methods_is_no_family():
    class Partial:
        observation_dim, action_dim, discrete, horizon = 1, 1, False, 1
        action_low, action_high = -1.0, 1.0

        def sample_tasks(self, num_tasks, generator, dtype=torch.float32):
            return torch.zeros(num_tasks, 1)

    assert not isinstance(Partial(), TaskFamily)  # no make_env
    assert not isinstance(object(), VectorEnv)
