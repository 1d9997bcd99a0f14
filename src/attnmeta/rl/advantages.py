"""Discounted returns, the linear feature baseline, advantages, and the policy-gradient loss.

The baseline is rllab's ``LinearFeatureBaseline`` (Duan et al., "Benchmarking Deep
Reinforcement Learning for Continuous Control", ICML 2016), which MAML uses "for both
learning and meta-learning updates ... fitted separately at each iteration for each
sampled task in the batch" (Finn et al. 2017, §5.3): a ridge regression (coefficient
1e-5, raised tenfold while the solution is not finite) of the discounted return on
``[clip(o, ±10), clip(o, ±10)², t/100, (t/100)², (t/100)³, 1]``. Advantages are
``return - baseline`` (GAE with λ = 1, as rllab and MAML use), optionally standardised per
task (rllab's ``center_adv``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from attnmeta.rl.distributions import ActionDistribution
from attnmeta.rl.rollout import Trajectories

__all__ = ["discounted_returns", "baseline_features", "linear_feature_baseline", "advantages",
           "policy_gradient_data", "PolicyGradientLoss"]


def discounted_returns(rewards: Tensor, gamma: float) -> Tensor:
    """``G_t = Σ_{k≥t} γ^{k-t} r_k`` along the last dimension: ``[..., L] -> [..., L]``."""
    length = rewards.shape[-1]
    steps = torch.arange(length, dtype=rewards.dtype)
    lag = steps[None, :] - steps[:, None]                              # k - t
    discount = torch.where(lag >= 0, gamma ** lag.clamp(min=0), torch.zeros_like(lag))
    return rewards @ discount.T


def baseline_features(observations: Tensor) -> Tensor:
    """rllab's features ``[..., L, obs_dim] -> [..., L, 2·obs_dim + 4]``."""
    clipped = observations.clamp(-10.0, 10.0)
    time = torch.arange(observations.shape[-2], dtype=observations.dtype) / 100.0
    time = time[:, None].expand(*observations.shape[:-1], 1)
    return torch.cat([clipped, clipped.pow(2), time, time.pow(2), time.pow(3),
                      torch.ones_like(time)], dim=-1)


def linear_feature_baseline(observations: Tensor, returns: Tensor, alive: Tensor,
                            reg_coeff: float = 1e-5) -> Tensor:
    """Per-task ridge fit of ``returns`` on :func:`baseline_features` over live steps.

    ``observations [T, E, L, obs]``, ``returns`` and ``alive`` ``[T, E, L]`` -> values
    ``[T, E, L]``. Solved in float64: the normal equations are poorly conditioned.
    """
    features = baseline_features(observations).double()
    weights = alive.double()[..., None]
    design = (features * weights).flatten(1, 2)                       # [T, E·L, F]
    targets = (returns.double() * alive.double()).flatten(1, 2)[..., None]
    gram = design.transpose(1, 2) @ design
    moment = design.transpose(1, 2) @ targets
    identity = torch.eye(gram.shape[-1], dtype=gram.dtype)
    for _ in range(5):
        coeffs = torch.linalg.solve(gram + reg_coeff * identity, moment)
        if torch.isfinite(coeffs).all():
            break
        reg_coeff *= 10
    return (features @ coeffs[:, None]).squeeze(-1).to(returns.dtype)


def advantages(trajectories: Trajectories, gamma: float, baseline: str = "linear",
               normalize: bool = True) -> Tensor:
    """``A_t = G_t - b(s_t)`` on live steps (0 on padding), ``[T, E, L]``.

    ``baseline``: ``"linear"`` (:func:`linear_feature_baseline`) or ``"none"``.
    ``normalize``: standardise over each task's live steps (mean 0, std 1).
    """
    alive = trajectories.alive
    returns = discounted_returns(trajectories.rewards, gamma)
    if baseline == "linear":
        returns = returns - linear_feature_baseline(trajectories.observations, returns, alive)
    elif baseline != "none":
        raise ValueError(f"baseline={baseline!r}: expected 'linear' or 'none'")
    advantage = returns * alive
    if normalize:
        count = alive.sum((1, 2), keepdim=True).clamp(min=1)
        mean = advantage.sum((1, 2), keepdim=True) / count
        std = (((advantage - mean) * alive).pow(2).sum((1, 2), keepdim=True) / count).sqrt()
        advantage = (advantage - mean) / (std + 1e-8) * alive
    return advantage


def policy_gradient_data(trajectories: Trajectories, gamma: float, baseline: str = "linear",
                         normalize: bool = True) -> tuple[Tensor, Tensor]:
    """The (inputs, targets) pair a :class:`PolicyGradientLoss` trains on.

    inputs ``[T, E, L, F]``: the tokens the policy read; targets ``[T, E, L, C + 2]``:
    ``[action (C columns), advantage, alive]``. Task ``t``'s slice is the support set that
    :func:`attnmeta.learners.base.inner_sgd` adapts on.
    """
    advantage = advantages(trajectories, gamma, baseline, normalize)
    targets = torch.cat([trajectories.actions, advantage[..., None],
                         trajectories.alive[..., None]], dim=-1)
    return trajectories.tokens, targets


class PolicyGradientLoss:
    """Surrogate loss whose gradient is the policy gradient: ``loss(outputs, targets)``.

    ``outputs [..., P]`` are the policy's distribution parameters, ``targets [..., C + 2]``
    as built by :func:`policy_gradient_data`; the mean runs over live steps.

    ``estimator="vpg"``: ``-mean(log π(a|s) · A)``, the REINFORCE surrogate of Finn et al.
    ``estimator="lvc"``: ``-mean(π(a|s) / ⊥π(a|s) · A)`` with ``⊥`` stop-gradient, the
    low-variance curvature surrogate of ProMP (Rothfuss et al., ICLR 2019,
    https://arxiv.org/abs/1810.06784). Both have the same gradient; LVC's Hessian also
    contains ``∇log π ∇log πᵀ A`` per time step, the term of ``∇²J`` that the VPG surrogate
    drops and DiCE (Foerster et al., ICML 2018, https://arxiv.org/abs/1802.05098) restores
    (DiCE also across time steps), so a second-order MAML meta-gradient through an LVC inner
    step accounts for how the pre-update samples depend on the parameters.
    """

    def __init__(self, distribution: ActionDistribution, estimator: str = "lvc") -> None:
        if estimator not in ("lvc", "vpg"):
            raise ValueError(f"estimator={estimator!r}: expected 'lvc' or 'vpg'")
        self.distribution, self.estimator = distribution, estimator

    def __call__(self, outputs: Tensor, targets: Tensor) -> Tensor:
        actions, advantage, alive = targets[..., :-2], targets[..., -2], targets[..., -1]
        log_prob = self.distribution.log_prob(outputs, actions)
        if self.estimator == "lvc":
            # detach() is a constant at every differentiation level, inside torch.func.grad too
            weight = torch.exp(log_prob - log_prob.detach())
        else:
            weight = log_prob
        return -(weight * advantage * alive).sum() / alive.sum().clamp(min=1)
