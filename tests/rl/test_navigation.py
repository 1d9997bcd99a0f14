"""2-D navigation dynamics and rewards against hand-computed values; the Gymnasium
wrapper and adapter against the vectorised environment."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from attnmeta.rl.navigation import Navigation2D, Navigation2DEnv
from attnmeta.rl.policies import MLPPolicy


def test_step_clips_velocity_and_pays_minus_distance():
    env = Navigation2D().make_env(torch.tensor([[0.3, -0.2]], dtype=torch.float64), episodes=1)
    assert env.reset().tolist() == [[[0.0, 0.0]]]
    position, reward, done = env.step(torch.tensor([[[0.05, 0.5]]], dtype=torch.float64))
    assert position.tolist() == [[[0.05, 0.1]]]          # 0.5 clipped to the 0.1 limit
    assert reward.item() == pytest.approx(-math.hypot(0.25, 0.3), abs=1e-12)
    assert not done.item()
    position, reward, _ = env.step(torch.tensor([[[-3.0, -0.02]]], dtype=torch.float64))
    assert position[0, 0].tolist() == pytest.approx([-0.05, 0.08])
    assert reward.item() == pytest.approx(-math.hypot(0.35, 0.28), abs=1e-12)


def test_episode_terminates_inside_the_goal_box_only():
    goals = torch.tensor([[0.1, 0.05], [0.1, 0.011]], dtype=torch.float64)
    env = Navigation2D().make_env(goals, episodes=1)
    env.reset()
    _, reward, done = env.step(torch.tensor([[[0.1, 0.045]], [[0.1, 0.0]]], dtype=torch.float64))
    assert done[:, 0].tolist() == [True, False]          # |dy| = 0.005 < 0.01; 0.011 is not
    assert reward[0, 0].item() == pytest.approx(-0.005, abs=1e-12)


def test_goals_are_uniform_in_the_paper_square_and_seeded():
    family = Navigation2D()
    goals = family.sample_tasks(5000, torch.Generator().manual_seed(0))
    assert goals.min() >= -0.5 and goals.max() <= 0.5
    assert goals.mean(0).abs().max() < 0.02 and abs(goals.var(0).mean() - 1 / 12) < 0.005
    again = family.sample_tasks(5000, torch.Generator().manual_seed(0))
    assert torch.equal(goals, again)


def test_bad_horizon_is_rejected_with_its_value():
    with pytest.raises(ValueError, match="horizon=0"):
        Navigation2D(horizon=0)


def straight_policy(log_std: float = -30.0) -> MLPPolicy:
    """Deterministic: always the normalised action (+1, +1), i.e. velocity (0.1, 0.1)."""
    policy = MLPPolicy(2, 2, hidden=()).double()
    with torch.no_grad():
        policy.net[0].weight.zero_()
        policy.net[0].bias.fill_(1.0)
        policy.log_std.fill_(log_std)
    return policy


@pytest.mark.filterwarnings("ignore:.*Box observation space:UserWarning")  # unbounded, as in MAML
def test_gymnasium_env_passes_the_checker_and_matches_the_torch_env():
    check_env(Navigation2DEnv(), skip_render_check=True)
    env = Navigation2DEnv(horizon=5)
    obs, info = env.reset(seed=3, options={"goal": (0.2, -0.1)})
    assert obs.tolist() == [0.0, 0.0] and info["goal"].tolist() == [0.2, -0.1]
    batch = Navigation2D(horizon=5).make_env(torch.tensor([[0.2, -0.1]], dtype=torch.float64), 1)
    batch.reset()
    actions = np.random.default_rng(0).uniform(-0.2, 0.2, size=(5, 2))
    for t, action in enumerate(actions):
        obs, reward, terminated, truncated, _ = env.step(action)
        position, expected, done = batch.step(torch.as_tensor(action)[None, None])
        assert obs == pytest.approx(position[0, 0].numpy(), abs=1e-6)
        assert reward == pytest.approx(expected.item(), abs=1e-12)
        assert terminated == done.item() and truncated == (t == 4)
