"""Policies for meta-RL: MAML's Gaussian MLP, and an attention policy over recent history.

Every policy maps a sequence of per-step *tokens* ``[..., L, F]`` to distribution
parameters ``[..., L, output_dim]`` (see :mod:`attnmeta.rl.distributions`); the rollout
builds the tokens with :meth:`tokens` and feeds the policy its last ``window`` live steps.

- :class:`MLPPolicy` reads only the current observation (``window = 1``): Finn et al.'s
  policy, "a neural network policy with two hidden layers of size 100, with ReLU
  nonlinearities" (MAML, ICML 2017, §5.3), Gaussian with a learned state-independent
  log-std as in rllab's ``GaussianMLPPolicy``.
- :class:`HistoryAttentionPolicy` reads ``(observation_t, action_{t-1}, reward_{t-1})``
  tokens and attends, causally, over the last ``window`` live steps. Meta-trained with
  MAML it adapts by gradient steps *and* by what it reads; trained on multi-episode trials
  with no gradient step it is an in-context learner that adapts by attending only, in the
  manner of RL² (Duan et al., 2016, https://arxiv.org/abs/1611.02779) and SNAIL (Mishra
  et al., ICLR 2018, https://arxiv.org/abs/1707.03141), with attention in place of their
  recurrent / temporal-convolution memories.

One attention layer exactly: the output at step ``t`` then depends on the tokens of the
``window`` most recent live steps and nothing else, so the rollout (which keeps only those
tokens) and the training pass over whole sequences compute the same function. Layer norm
is :class:`attnmeta.norm.LayerNorm` (plain ops): second-order MAML needs its exact double
backward.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from attnmeta.attention import TransformerBlock
from attnmeta.norm import LayerNorm
from attnmeta.rl.distributions import ActionDistribution, Categorical, DiagonalGaussian
from attnmeta.rl.registry import PolicyEntry, register_policy

__all__ = ["MLPPolicy", "HistoryAttentionPolicy", "recent_history_mask", "make_distribution"]


def make_distribution(action_dim: int, discrete: bool) -> ActionDistribution:
    return Categorical(action_dim) if discrete else DiagonalGaussian(action_dim)


def _mlp(in_dim: int, hidden: Sequence[int], out_dim: int) -> nn.Sequential:
    widths = [in_dim, *hidden]
    layers: list[nn.Module] = []
    for w_in, w_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(w_in, w_out), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(widths[-1], out_dim))


class _GaussianOrLogits(nn.Module):
    """Shared tail: a Gaussian appends its learned log-std to the predicted means."""

    def __init__(self, action_dim: int, discrete: bool, init_log_std: float) -> None:
        super().__init__()
        self.distribution = make_distribution(action_dim, discrete)
        self.discrete = discrete
        if not discrete:
            self.log_std = nn.Parameter(torch.full((action_dim,), float(init_log_std)))

    def _outputs(self, head: Tensor) -> Tensor:
        if self.discrete:
            return head
        return torch.cat([head, self.log_std.expand_as(head)], dim=-1)


class MLPPolicy(_GaussianOrLogits):
    """Observation ``[..., obs_dim]`` -> distribution parameters ``[..., output_dim]``.

    Tokens are the observations themselves, so any leading shape works (``[E, L, obs]``).
    """

    window = 1

    def __init__(self, observation_dim: int, action_dim: int, discrete: bool = False,
                 hidden: Sequence[int] = (100, 100), init_log_std: float = 0.0) -> None:
        super().__init__(action_dim, discrete, init_log_std)
        self.token_dim = observation_dim
        self.net = _mlp(observation_dim, hidden, action_dim)

    def tokens(self, observation: Tensor, previous_action: Tensor, previous_reward: Tensor,
               episode_start: Tensor, alive: Tensor) -> Tensor:
        """The current observation ``[T, E, obs_dim]``; the other arguments are unused."""
        return observation

    def forward(self, tokens: Tensor, last_only: bool = False) -> Tensor:
        """``tokens [..., L, obs_dim] -> [..., L, P]``, or ``[..., P]`` for the last step only."""
        return self._outputs(self.net(tokens[..., -1, :] if last_only else tokens))


def recent_history_mask(alive: Tensor, window: int) -> Tensor:
    """Which steps each step may attend to: itself and earlier live steps, at most the
    ``window`` most recent live ones. ``alive [B, L]`` bool -> keep-mask ``[B, 1, L, L]``."""
    count = alive.long().cumsum(-1)                               # live steps up to i
    length = alive.shape[-1]
    causal = torch.ones(length, length, dtype=torch.bool, device=alive.device).tril()
    recent = (count[..., :, None] - count[..., None, :]) < window  # live steps in (j, i]
    return (causal & recent & alive[..., None, :])[..., None, :, :]


class HistoryAttentionPolicy(_GaussianOrLogits):
    """Attention over the recent ``(observation, action, reward)`` history.

    Token at step ``t``: ``[observation_t, action_{t-1} features, reward_{t-1},
    episode_start_t, alive_t]`` (``F = obs_dim + action features + 3``). Forward: a linear
    embedding, one pre-norm :class:`~attnmeta.attention.TransformerBlock` whose attention is
    restricted by :func:`recent_history_mask`, a layer norm and an MLP head per step.
    ``tokens [..., L, F] -> [..., L, output_dim]``; the last token column (``alive``) marks
    padding after an episode ended, which no step attends to.
    """

    def __init__(self, observation_dim: int, action_dim: int, discrete: bool = False,
                 window: int = 16, d_model: int = 32, n_heads: int = 2,
                 hidden: Sequence[int] = (64,), init_log_std: float = 0.0) -> None:
        super().__init__(action_dim, discrete, init_log_std)
        if window < 1:
            raise ValueError(f"window={window}: expected at least 1 step of history")
        self.window = window
        self.token_dim = observation_dim + self.distribution.feature_dim + 3
        self.embed = nn.Linear(self.token_dim, d_model)
        self.block = TransformerBlock(d_model, n_heads, mlp_ratio=2.0)
        self.norm = LayerNorm(d_model)
        self.head = _mlp(d_model, hidden, action_dim)

    def tokens(self, observation: Tensor, previous_action: Tensor, previous_reward: Tensor,
               episode_start: Tensor, alive: Tensor) -> Tensor:
        """``[T, E, obs]``, ``[T, E, action features]``, then three ``[T, E]`` -> ``[T, E, F]``."""
        return torch.cat([observation, previous_action, previous_reward[..., None],
                          episode_start[..., None], alive[..., None]], dim=-1)

    def forward(self, tokens: Tensor, last_only: bool = False) -> Tensor:
        """``tokens [..., L, F] -> [..., L, P]``; with ``last_only`` just the last step's
        ``[..., P]`` (what a rollout needs: a fraction of the work, the same numbers)."""
        length, width = tokens.shape[-2:]
        flat = tokens.reshape(-1, length, width)
        mask = recent_history_mask(flat[..., -1] > 0.5, self.window)
        embedded = self.embed(flat)
        if last_only:
            hidden = self._last_step_of_block(embedded, mask[..., -1:, :])
            return self._outputs(self.head(self.norm(hidden))).reshape(*tokens.shape[:-2], -1)
        hidden, _ = self.block(embedded, mask=mask)
        outputs = self._outputs(self.head(self.norm(hidden)))
        return outputs.reshape(*tokens.shape[:-2], length, -1)

    def _last_step_of_block(self, x: Tensor, mask: Tensor) -> Tensor:
        """``TransformerBlock.forward`` for the last query only: ``[B, L, d] -> [B, d]``
        (keys and values still come from every step; ``mask`` is ``[B, 1, 1, L]``)."""
        block = self.block
        normed = block.norm_attn(x)
        attended, _ = block.attn(normed[:, -1:], normed, mask=mask)
        hidden = x[:, -1:] + attended
        hidden = hidden + block.mlp(block.norm_mlp(hidden))
        return hidden[:, 0]


register_policy("mlp", PolicyEntry(lambda spec, family: MLPPolicy(
    family.observation_dim, family.action_dim, family.discrete, hidden=spec.hidden,
    init_log_std=spec.init_log_std)))
register_policy("attention", PolicyEntry(lambda spec, family: HistoryAttentionPolicy(
    family.observation_dim, family.action_dim, family.discrete, window=spec.window,
    d_model=spec.d_model, n_heads=spec.heads, hidden=spec.hidden,
    init_log_std=spec.init_log_std), reads_history=True))
