"""attnmeta.rl.advantages: returns, the linear feature baseline and the surrogate losses
against closed forms (the estimators' statistics on a bandit: test_bandit.py)."""

from __future__ import annotations

import pytest
import torch

from attnmeta.rl.advantages import (PolicyGradientLoss, advantages, baseline_features,
                                    discounted_returns, linear_feature_baseline,
                                    policy_gradient_data)
from attnmeta.rl.distributions import Categorical
from attnmeta.rl.rollout import Trajectories


def test_discounted_returns_equal_the_backward_recursion():
    rewards = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, -1.0, 0.0, 5.0]], dtype=torch.float64)
    returns = discounted_returns(rewards, 0.9)
    expected = torch.zeros_like(rewards)
    running = torch.zeros(2, dtype=torch.float64)
    for t in reversed(range(4)):  # G_t = r_t + γ G_{t+1}
        running = rewards[:, t] + 0.9 * running
        expected[:, t] = running
    torch.testing.assert_close(returns, expected)


def test_baseline_features_are_rllabs():
    observations = torch.tensor([[[12.0], [-0.5], [3.0]]])
    features = baseline_features(observations)
    assert features.shape == (1, 3, 6)
    assert features[0, 0].tolist() == [10.0, 100.0, 0.0, 0.0, 0.0, 1.0]  # clipped to ±10
    assert features[0, 2].tolist() == pytest.approx([3.0, 9.0, 0.02, 0.0004, 0.000008, 1.0])


def test_the_baseline_fits_returns_that_are_linear_in_its_features_exactly():
    torch.manual_seed(0)
    observations = torch.randn(2, 3, 5, 1, dtype=torch.float64)
    coefficients = torch.tensor([0.5, -1.0, 2.0, 0.0, 0.0, 3.0], dtype=torch.float64)
    returns = baseline_features(observations) @ coefficients
    alive = torch.ones(2, 3, 5, dtype=torch.float64)
    torch.testing.assert_close(linear_feature_baseline(observations, returns, alive, 1e-10),
                               returns, atol=1e-6, rtol=0)


def trajectories(rewards, alive) -> Trajectories:
    rewards = torch.tensor(rewards, dtype=torch.float64)
    shape = rewards.shape
    return Trajectories(observations=torch.zeros(*shape, 1, dtype=torch.float64),
                        tokens=torch.zeros(*shape, 2, dtype=torch.float64),
                        actions=torch.zeros(*shape, 1, dtype=torch.float64), rewards=rewards,
                        alive=torch.tensor(alive, dtype=torch.float64), episode_length=shape[-1])


def test_advantages_without_baseline_are_the_returns_masked_and_standardised_per_task():
    batch = trajectories([[[1.0, 1.0, 0.0], [2.0, 0.0, 0.0]]], [[[1, 1, 0], [1, 1, 1]]])
    raw = advantages(batch, gamma=1.0, baseline="none", normalize=False)
    assert raw.tolist() == [[[2.0, 1.0, 0.0], [2.0, 0.0, 0.0]]]
    standard = advantages(batch, gamma=1.0, baseline="none")
    live = standard[batch.alive.bool()]
    assert live.mean().item() == pytest.approx(0.0, abs=1e-9)
    assert (live.pow(2).mean().sqrt()).item() == pytest.approx(1.0, abs=1e-6)
    assert standard[0, 0, 2].item() == 0.0
    with pytest.raises(ValueError, match=r"baseline='mean': expected 'linear' or 'none'"):
        advantages(batch, 1.0, baseline="mean")


def test_policy_gradient_data_holds_actions_advantages_and_alive():
    batch = trajectories([[[1.0, 2.0]]], [[[1, 1]]])
    inputs, targets = policy_gradient_data(batch, 0.5, baseline="none", normalize=False)
    assert inputs is batch.tokens and targets.shape == (1, 1, 2, 3)
    assert targets[0, 0].tolist() == [[0.0, 2.0, 1.0], [0.0, 2.0, 1.0]]  # G = 1 + 0.5·2, 2


@pytest.mark.parametrize("estimator", ["vpg", "lvc"])
def test_both_surrogates_have_the_reinforce_gradient(estimator):
    logits = torch.tensor([[0.3, -0.2, 0.1], [0.0, 0.5, -0.5]], dtype=torch.float64,
                          requires_grad=True)
    actions, advantage = torch.tensor([[2.0], [1.0]], dtype=torch.float64), \
        torch.tensor([1.5, -0.5], dtype=torch.float64)
    targets = torch.cat([actions, advantage[:, None], torch.ones(2, 1, dtype=torch.float64)], -1)
    loss = PolicyGradientLoss(Categorical(3), estimator)(logits, targets)
    (gradient,) = torch.autograd.grad(loss, logits)
    one_hot = torch.nn.functional.one_hot(actions[:, 0].long(), 3).double()
    expected = -(one_hot - torch.softmax(logits.detach(), -1)) * advantage[:, None] / 2
    torch.testing.assert_close(gradient, expected)
    if estimator == "lvc":
        assert loss.item() == pytest.approx(-advantage.mean().item())  # the ratio is 1
    with pytest.raises(ValueError, match=r"estimator='ppo'"):
        PolicyGradientLoss(Categorical(3), "ppo")
