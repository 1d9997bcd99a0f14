"""Action distributions as pure functions of a policy's output tensor.

A policy's ``forward`` returns everything its distribution needs in one tensor (the
Gaussian's mean and log-std side by side, or categorical logits), so the policy-gradient
loss is an ordinary ``loss_fn(outputs, targets)`` that :func:`attnmeta.learners.base.inner_sgd`
can differentiate, twice if asked.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ActionDistribution", "DiagonalGaussian", "Categorical"]


class ActionDistribution:
    """``output_dim`` numbers per step; actions stored as ``action_columns`` floats."""

    output_dim: int
    action_columns: int
    feature_dim: int  # width of the previous-action feature a history policy reads

    def log_prob(self, outputs: Tensor, actions: Tensor) -> Tensor:
        """``outputs [..., output_dim]``, ``actions [..., action_columns]`` -> ``[...]``."""
        raise NotImplementedError

    def sample(self, outputs: Tensor, generator: torch.Generator) -> Tensor:
        """``outputs [..., output_dim]`` -> actions ``[..., action_columns]``."""
        raise NotImplementedError

    def action_features(self, actions: Tensor) -> Tensor:
        """What a history policy sees of an action it took: ``[..., feature_dim]``."""
        raise NotImplementedError


class DiagonalGaussian(ActionDistribution):
    """``N(mean, diag(exp(log_std)²))``; outputs are ``[mean, log_std]`` (``2·A`` numbers)."""

    def __init__(self, action_dim: int) -> None:
        self.action_dim = action_dim
        self.output_dim, self.action_columns, self.feature_dim = 2 * action_dim, action_dim, action_dim

    def log_prob(self, outputs: Tensor, actions: Tensor) -> Tensor:
        mean, log_std = outputs.chunk(2, dim=-1)
        z = (actions - mean) * torch.exp(-log_std)
        return (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    def sample(self, outputs: Tensor, generator: torch.Generator) -> Tensor:
        mean, log_std = outputs.chunk(2, dim=-1)
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
        return mean + torch.exp(log_std) * noise

    def action_features(self, actions: Tensor) -> Tensor:
        # The executed action: normalised actions beyond ±1 are clipped by the environment.
        return actions.clamp(-1.0, 1.0)


class Categorical(ActionDistribution):
    """Softmax over ``K`` logits; an action is stored as its index (one float column)."""

    def __init__(self, num_actions: int) -> None:
        self.num_actions = num_actions
        self.output_dim, self.action_columns, self.feature_dim = num_actions, 1, num_actions

    def log_prob(self, outputs: Tensor, actions: Tensor) -> Tensor:
        log_probs = F.log_softmax(outputs, dim=-1)
        return log_probs.gather(-1, actions.long())[..., 0]

    def sample(self, outputs: Tensor, generator: torch.Generator) -> Tensor:
        probs = F.softmax(outputs, dim=-1).reshape(-1, self.num_actions)
        index = torch.multinomial(probs, 1, generator=generator)
        return index.to(outputs.dtype).view(*outputs.shape[:-1], 1)

    def action_features(self, actions: Tensor) -> Tensor:
        return F.one_hot(actions[..., 0].long(), self.num_actions).to(actions.dtype)
