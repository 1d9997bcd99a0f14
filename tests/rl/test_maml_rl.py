"""MAML for policies: the inner step is a hand-computed policy-gradient step, and the
meta-gradient equals a hand-unrolled ``torch.autograd.grad(create_graph=True)`` reference
(float64), for an MLP and an attention policy and both inner surrogates."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import functional_call

from attnmeta import kernels
from attnmeta.rl.advantages import policy_gradient_data
from attnmeta.rl.maml_rl import PolicyGradientMAML, TaskBatch
from attnmeta.rl.navigation import Navigation2D
from attnmeta.rl.policies import HistoryAttentionPolicy, MLPPolicy
from attnmeta.rl.rollout import per_task_forward, sample_trajectories, shared_forward

TOL = dict(rtol=1e-9, atol=1e-11)


def test_inner_step_is_the_hand_computed_policy_gradient_step():
    """Linear Gaussian policy μ = W o + b, σ = exp(s): θ' = θ + α · mean_t A_t ∇log π(a_t|o_t)
    with ∇_μ log π = (a - μ)/σ² and ∇_s log π = (a - μ)²/σ² - 1."""
    torch.manual_seed(0)
    family = Navigation2D(horizon=7)
    policy = MLPPolicy(2, 2, hidden=()).double()
    learner = PolicyGradientMAML(policy, family, inner_lr=0.1, episodes_per_task=4)
    goal = torch.tensor([[0.2, -0.3]], dtype=torch.float64)
    trajectories = learner.sample(goal, torch.Generator().manual_seed(1))
    inputs, targets = learner.policy_gradient_data(trajectories)
    adapted = learner.adapt(inputs[0], targets[0], steps=1)        # the core MAML.adapt

    obs, actions = trajectories.observations[0], trajectories.actions[0]
    advantage, alive = targets[0, ..., 2], targets[0, ..., 3]
    weight, bias, log_std = policy.net[0].weight, policy.net[0].bias, policy.log_std
    mean = obs @ weight.T + bias
    score_mean = (actions - mean) / torch.exp(2 * log_std)
    score_log_std = (actions - mean).pow(2) / torch.exp(2 * log_std) - 1
    coefficient = (advantage * alive / alive.sum())[..., None]
    expected = {
        "net.0.weight": weight + 0.1 * torch.einsum("elj,elk->jk", coefficient * score_mean, obs),
        "net.0.bias": bias + 0.1 * (coefficient * score_mean).sum((0, 1)),
        "log_std": log_std + 0.1 * (coefficient * score_log_std).sum((0, 1)),
    }
    for name, value in expected.items():
        torch.testing.assert_close(adapted[name], value.detach(), **TOL)
    assert not torch.allclose(adapted["net.0.bias"], bias)        # the step did something


def gaussian_surrogate(estimator: str):
    """The surrogate written out by hand (no library loss)."""

    def surrogate(outputs, targets):
        mean, log_std = outputs.chunk(2, -1)
        actions, advantage, alive = targets[..., :2], targets[..., 2], targets[..., 3]
        log_prob = (-0.5 * ((actions - mean) / torch.exp(log_std)) ** 2 - log_std
                    - 0.5 * math.log(2 * math.pi)).sum(-1)
        weight = torch.exp(log_prob - log_prob.detach()) if estimator == "lvc" else log_prob
        return -(weight * advantage * alive).sum() / alive.sum()

    return surrogate


def reference_meta_gradient(learner: PolicyGradientMAML, batch: TaskBatch, estimator: str,
                            first_order: bool) -> list[torch.Tensor]:
    """Hand-unrolled MAML-RL on the same seeded rollouts as the learner."""
    policy, family = learner.model, learner.family
    names = [n for n, _ in policy.named_parameters()]
    meta = [p for _, p in policy.named_parameters()]
    surrogate = gaussian_surrogate(estimator)
    generator = torch.Generator().manual_seed(batch.seed)

    def data(trajectories):
        return policy_gradient_data(trajectories, learner.gamma, learner.baseline,
                                    learner.normalize_advantages)

    def loss(params, inputs, targets):
        return surrogate(functional_call(policy, dict(zip(names, params)), (inputs,)), targets)

    # Post-update rollouts are vmapped over tasks; the meta-gradient differentiates twice.
    with kernels.differentiable(vmap=True, double_backward=True):
        pre = sample_trajectories(family, policy, shared_forward(policy), batch.tasks,
                                  learner.episodes_per_task, generator)
        inputs, targets = data(pre)
        adapted = []
        for t in range(batch.tasks.shape[0]):
            grads = torch.autograd.grad(loss(meta, inputs[t], targets[t]), meta,
                                        create_graph=not first_order)
            adapted.append([p - learner.inner_lr * g for p, g in zip(meta, grads)])
        stacked = {n: torch.stack([a[i].detach() for a in adapted]) for i, n in enumerate(names)}
        post = sample_trajectories(family, policy, per_task_forward(policy, stacked, {}),
                                   batch.tasks, learner.episodes_per_task, generator)
        inputs, targets = data(post)
        if first_order:
            adapted = [[p.detach().requires_grad_() for p in a] for a in adapted]
            per_task = [torch.autograd.grad(loss(a, inputs[t], targets[t]) / len(adapted), a)
                        for t, a in enumerate(adapted)]
            return [sum(g) for g in zip(*per_task)]
        outer = torch.stack([loss(a, inputs[t], targets[t]) for t, a in enumerate(adapted)])
        return list(torch.autograd.grad(outer.mean(), meta))


def make_policy(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "mlp":
        return MLPPolicy(2, 2, hidden=(8,)).double()
    return HistoryAttentionPolicy(2, 2, window=3, d_model=8, n_heads=2, hidden=(8,)).double()


@pytest.mark.parametrize("kind", ["mlp", "attention"])
@pytest.mark.parametrize("estimator", ["lvc", "vpg"])
def test_second_order_meta_gradient_matches_hand_unrolled_reference(kind, estimator):
    # A wide goal box so that some episodes end early: the padding is covered too.
    family = Navigation2D(horizon=6, goal_low=-0.15, goal_high=0.15, goal_tolerance=0.1)
    learner = PolicyGradientMAML(make_policy(kind), family, inner_lr=0.1, episodes_per_task=3,
                                 estimator=estimator)
    tasks = family.sample_tasks(2, torch.Generator().manual_seed(5), dtype=torch.float64)
    batch = TaskBatch(tasks, seed=11)
    alive = learner.sample(tasks, torch.Generator().manual_seed(11)).alive
    assert alive.min() == 0 and alive.max() == 1
    learner.zero_grad()
    learner.training_step(batch).loss.backward()
    actual = [p.grad for p in learner.model.parameters()]
    expected = reference_meta_gradient(learner, batch, estimator, first_order=False)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, **TOL)


def test_first_order_meta_gradient_matches_reference_and_differs_from_second_order():
    family = Navigation2D(horizon=6)
    tasks = family.sample_tasks(2, torch.Generator().manual_seed(5), dtype=torch.float64)
    batch = TaskBatch(tasks, seed=11)
    gradients = {}
    for first_order in (True, False):
        learner = PolicyGradientMAML(make_policy("mlp"), family, episodes_per_task=3,
                                     first_order=first_order)
        learner.training_step(batch).loss.backward()
        gradients[first_order] = [p.grad for p in learner.model.parameters()]
    expected = reference_meta_gradient(learner, batch, "lvc", first_order=True)
    for a, e in zip(gradients[True], expected):
        torch.testing.assert_close(a, e, **TOL)
    assert not torch.allclose(gradients[True][0], gradients[False][0])


def test_lvc_and_vpg_meta_gradients_differ_by_the_hessian_term():
    family = Navigation2D(horizon=6)
    tasks = family.sample_tasks(2, torch.Generator().manual_seed(5), dtype=torch.float64)
    grads = []
    for estimator in ("lvc", "vpg"):
        learner = PolicyGradientMAML(make_policy("mlp"), family, episodes_per_task=3,
                                     estimator=estimator)
        output = learner.training_step(TaskBatch(tasks, seed=11))
        output.loss.backward()
        grads.append(learner.model.net[0].weight.grad)
        returns = output.metrics
    assert set(returns) == {"return_before", "return_after"}
    assert not torch.allclose(grads[0], grads[1], rtol=1e-6)
