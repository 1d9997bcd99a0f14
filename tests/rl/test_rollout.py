"""attnmeta.rl.rollout: trajectories sampled from a task family, action scaling and the
shared or per-task policy forward."""

from __future__ import annotations

import math

import pytest
import torch

from attnmeta.errors import DivergedError
from attnmeta.rl.bandit import BanditTasks
from attnmeta.rl.navigation import Navigation2D
from attnmeta.rl.policies import MLPPolicy
from attnmeta.rl.rollout import (per_task_forward, sample_trajectories, shared_forward,
                                 to_env_action)
from test_navigation import straight_policy


def test_rollout_pads_after_the_goal_is_reached():
    family = Navigation2D(horizon=6)
    policy = straight_policy()
    goals = torch.tensor([[0.3, 0.3]], dtype=torch.float64)
    trajectories = sample_trajectories(family, policy, shared_forward(policy), goals, 2,
                                       torch.Generator().manual_seed(0))
    assert trajectories.alive[0, 0].tolist() == [1, 1, 1, 0, 0, 0]
    expected = [-0.2 * math.sqrt(2), -0.1 * math.sqrt(2), 0.0, 0.0, 0.0, 0.0]
    assert trajectories.rewards[0, 0].tolist() == pytest.approx(expected, abs=1e-12)
    assert trajectories.episode_returns()[0, :, 0].tolist() == pytest.approx(
        [-0.3 * math.sqrt(2)] * 2, abs=1e-12)
    torch.testing.assert_close(trajectories.observations[0, 0, :3], torch.tensor(
        [[0, 0], [0.1, 0.1], [0.2, 0.2]], dtype=torch.float64), atol=1e-12, rtol=0)



def test_actions_map_from_the_unit_box_onto_the_environments():
    navigation = Navigation2D()  # actions in [-0.1, 0.1]
    action = torch.tensor([[[-1.0, 0.5], [2.0, 0.0]]])
    torch.testing.assert_close(to_env_action(navigation, action),
                               torch.tensor([[[-0.1, 0.05], [0.1, 0.0]]]))
    assert to_env_action(BanditTasks(arms=3, horizon=1),
                         torch.tensor([[[2.0], [0.0]]])).tolist() == [[2, 0]]


def test_per_task_forward_gives_each_task_its_own_parameters():
    torch.manual_seed(0)
    policy = MLPPolicy(2, 2, hidden=(4,)).double()
    tokens = torch.randn(3, 2, policy.window, policy.token_dim, dtype=torch.float64)
    params = {name: p.detach().expand(3, *p.shape).clone() for name, p in policy.named_parameters()}
    frozen = dict(policy.named_buffers())
    torch.testing.assert_close(per_task_forward(policy, params, frozen)(tokens),
                               shared_forward(policy)(tokens))
    params["net.2.bias"][1] += 1.0  # task 1 only: its means move by 1
    moved = per_task_forward(policy, params, frozen)(tokens) - shared_forward(policy)(tokens)
    torch.testing.assert_close(moved[1, :, :2], torch.ones(2, 2, dtype=torch.float64))
    assert moved[1, :, 2:].abs().max() == 0 and moved[[0, 2]].abs().max() == 0  # log-std too


def test_a_rollout_is_a_function_of_its_seed_and_refuses_non_finite_outputs():
    family, policy = Navigation2D(horizon=4), MLPPolicy(2, 2, hidden=(4,)).double()
    goals = torch.tensor([[0.3, -0.2]], dtype=torch.float64)
    runs = [sample_trajectories(family, policy, shared_forward(policy), goals, 3,
                                torch.Generator().manual_seed(7), trial_episodes=2)
            for _ in range(2)]
    assert torch.equal(runs[0].actions, runs[1].actions) and runs[0].rewards.shape == (1, 3, 8)
    assert runs[0].trial_episodes == 2 and runs[0].episode_returns().shape == (1, 3, 2)
    with torch.no_grad():
        policy.net[0].weight.fill_(float("nan"))
    with pytest.raises(DivergedError, match="the policy's outputs are not finite"):
        sample_trajectories(family, policy, shared_forward(policy), goals, 1,
                            torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"episodes=0, trial_episodes=1: expected >= 1"):
        sample_trajectories(family, policy, shared_forward(policy), goals, 0,
                            torch.Generator().manual_seed(0))
