"""Bandits: rewards by hand, and the policy-gradient estimators against analytic gradients.

On a one-pull bandit with a softmax policy over logits ``z``, the expected reward is
``J(z) = Σ_a softmax(z)_a μ_a`` with gradient ``π ⊙ (μ - J)``. The tests average the
library's estimate (sampling, advantages, :class:`PolicyGradientLoss`, autograd) over many
seeded batches and require it within 4 standard errors of the analytic value.
"""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from attnmeta.rl.advantages import PolicyGradientLoss, policy_gradient_data
from attnmeta.rl.bandit import BanditTasks
from attnmeta.rl.policies import MLPPolicy
from attnmeta.rl.rollout import sample_trajectories, shared_forward

ARM_MEANS = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
LOGITS = torch.tensor([0.4, 0.2, -0.2], dtype=torch.float64)


def expected_reward(logits: torch.Tensor) -> torch.Tensor:
    return (torch.softmax(logits, -1) * ARM_MEANS).sum()


def softmax_policy() -> MLPPolicy:
    """Linear-softmax policy on the constant observation 1: logits = weight + bias = LOGITS."""
    policy = MLPPolicy(1, 3, discrete=True, hidden=()).double()
    with torch.no_grad():
        policy.net[0].weight.zero_()
        policy.net[0].bias.copy_(LOGITS)
    return policy


def per_task_logit_gradients(batches: int, episodes: int, baseline: str, seed: int = 0,
                             estimator: str = "vpg") -> torch.Tensor:
    """Policy-gradient estimate w.r.t. the logits for ``batches`` independent batches of
    ``episodes`` one-pull episodes (each batch a separate task, its own baseline fit)."""
    family = BanditTasks(arms=3, horizon=1)
    policy = softmax_policy()
    tasks = ARM_MEANS.expand(batches, -1).clone()
    trajectories = sample_trajectories(family, policy, shared_forward(policy), tasks, episodes,
                                       torch.Generator().manual_seed(seed))
    inputs, targets = policy_gradient_data(trajectories, gamma=1.0, baseline=baseline,
                                           normalize=False)
    logits = LOGITS.expand(batches, 1, 1, 3).clone().requires_grad_()   # one copy per batch
    outputs = logits.expand(batches, episodes, 1, 3)
    assert torch.allclose(outputs, policy(inputs))                       # same numbers as the policy
    loss_fn = PolicyGradientLoss(policy.distribution, estimator)
    per_batch_losses = torch.vmap(loss_fn)(outputs, targets)
    return -torch.autograd.grad(per_batch_losses.sum(), logits)[0].view(batches, 3)  # ascent


def test_multi_armed_rewards_follow_the_arm_probabilities():
    family = BanditTasks(arms=3, horizon=4)
    env = family.make_env(torch.tensor([[0.0, 1.0, 0.0]]), 5, torch.Generator().manual_seed(0))
    assert env.reset().tolist() == [[[1.0]] * 5]
    _, reward, done = env.step(torch.tensor([[0, 1, 2, 1, 0]]))
    assert reward.tolist() == [[0.0, 1.0, 0.0, 1.0, 0.0]] and not done.any()


def test_contextual_arm_probability_is_a_logistic_of_the_context():
    family = BanditTasks(arms=2, horizon=1, context_dim=2)
    weights = torch.tensor([[1.0, -2.0, 0.5, 0.0]], dtype=torch.float64)   # w_0, w_1
    env = family.make_env(weights, 3, torch.Generator().manual_seed(0))
    context = env.reset()
    expected = torch.sigmoid(torch.stack([context @ torch.tensor([1.0, -2.0], dtype=torch.float64),
                                          context @ torch.tensor([0.5, 0.0], dtype=torch.float64)],
                                         -1))
    torch.testing.assert_close(env.arm_probabilities(), expected)


def test_policy_gradient_estimate_is_unbiased_without_baseline():
    analytic = torch.softmax(LOGITS, -1) * (ARM_MEANS - expected_reward(LOGITS))
    estimates = per_task_logit_gradients(batches=400, episodes=200, baseline="none")
    mean, stderr = estimates.mean(0), estimates.std(0) / estimates.shape[0] ** 0.5
    assert stderr.max() < 0.005                     # 80 000 samples: a sharp test
    assert ((mean - analytic).abs() <= 4 * stderr).all(), (mean, analytic, stderr)


def test_batch_fitted_baseline_scales_the_expectation_by_n_minus_1_over_n():
    """The linear feature baseline fitted on the batch itself (features are constant here,
    so it is the batch mean) makes E[estimate] = (1 - 1/N) ∇J: exact, and visible at N=4."""
    analytic = torch.softmax(LOGITS, -1) * (ARM_MEANS - expected_reward(LOGITS))
    estimates = per_task_logit_gradients(batches=8000, episodes=4, baseline="linear", seed=1)
    mean, stderr = estimates.mean(0), estimates.std(0) / estimates.shape[0] ** 0.5
    assert ((mean - 0.75 * analytic).abs() <= 4 * stderr).all(), (mean, 0.75 * analytic)
    largest = analytic.abs().argmax()
    assert (mean - analytic)[largest].abs() > 4 * stderr[largest]


@pytest.mark.parametrize("estimator", ["lvc", "vpg"])
def test_only_the_lvc_surrogate_has_an_unbiased_hessian(estimator):
    """Second derivative of the surrogate w.r.t. the logits, averaged over samples, vs the
    analytic Hessian of J: LVC's contains E[∇logπ ∇logπᵀ r] and matches; VPG's does not."""
    family = BanditTasks(arms=3, horizon=1)
    policy = softmax_policy()
    trajectories = sample_trajectories(family, policy, shared_forward(policy), ARM_MEANS[None],
                                       200_000, torch.Generator().manual_seed(2))
    inputs, targets = policy_gradient_data(trajectories, 1.0, baseline="none", normalize=False)
    loss_fn = PolicyGradientLoss(policy.distribution, estimator)
    params = dict(policy.named_parameters())

    def surrogate(bias: torch.Tensor) -> torch.Tensor:
        outputs = functional_call(policy, {**params, "net.0.bias": bias}, (inputs[0],))
        return -loss_fn(outputs, targets[0])

    estimate = torch.autograd.functional.hessian(surrogate, LOGITS.clone())
    analytic = torch.autograd.functional.hessian(expected_reward, LOGITS.clone())
    error = (estimate - analytic).abs().max().item()
    if estimator == "lvc":
        assert error < 0.01, (estimate, analytic)
    else:
        assert error > 0.05, (estimate, analytic)
