"""MAML for policies (Finn, Abbeel & Levine, ICML 2017, §3.2 and §5.3,
https://arxiv.org/abs/1703.03400), built on the core gradient learner.

:class:`PolicyGradientMAML` is MAML's meta-objective on
:class:`attnmeta.learners.GradientLearner` with a policy as the model and
:class:`~attnmeta.rl.advantages.PolicyGradientLoss` as ``loss_fn``: a task's "support set"
is ``(tokens, [action, advantage, alive])`` of trajectories sampled with the pre-update
policy, and the inner step is the core :func:`attnmeta.learners.base.inner_sgd` on that
surrogate: one vanilla policy-gradient step, ``θ' = θ + α ∇̂J(θ)``, differentiable by the
outer backward (second order) unless ``first_order``. What RL adds is only the data: the
query set has to be sampled *after* adapting, with the adapted policy. (It shares
parameter split, step sizes and ``adapt`` with :class:`attnmeta.learners.MAML` through
their base, not MAML itself: MAML's own methods compute the meta-loss of an
:class:`~attnmeta.tasks.Episode` batch, which a batch of RL tasks is not.)

One meta-iteration, for a batch of tasks:

1. sample ``episodes_per_task`` episodes per task with ``θ`` (all tasks at once);
2. fit the linear feature baseline per task, compute advantages;
3. ``θ'_i = inner_sgd(θ)`` per task (repeat 1–3 from ``θ'_i`` for ``inner_steps > 1``);
4. sample episodes with each ``θ'_i`` (``torch.vmap`` over tasks, no gradient);
5. outer loss ``mean_i L_i(θ'_i(θ))`` with ``L`` the same surrogate on the new episodes:
   its gradient through ``θ'_i(θ)`` is the MAML meta-gradient. The training loop
   (:func:`attnmeta.train.meta_train`) minimises it with Adam. The paper uses TRPO as
   meta-optimiser; we keep the library's one training loop and its Adam, with the
   meta-gradient norm clipping (``train.grad_clip``) as a crude stand-in for the trust
   region where a policy needs it (the attention policy did: benchmarks/results/rl.md).

The outer surrogate is a policy gradient at ``θ'``; autograd chains it through
``dθ'/dθ = I + α ∇̂²J(θ)``, so the second-order meta-gradient is only as good as the
inner surrogate's Hessian as an estimate of ``∇²J``. Differentiating Finn et al.'s
REINFORCE surrogate ``-mean(log π · A)`` twice gives ``E[∇²log π · A]`` alone and misses
``E[∇log π ∇log πᵀ A]``, the part that comes from the pre-update samples depending on
``θ`` (Foerster et al., DiCE, ICML 2018; Rothfuss et al., ProMP, ICLR 2019). With
``estimator="lvc"`` (the default) the inner surrogate is ProMP's low-variance-curvature
form ``-mean(π/⊥π · A)``: the same gradient, and a Hessian that has that term for each
time step (exactly unbiased on one-step bandits, see ``tests/rl/test_bandit.py``).
``estimator="vpg"`` reproduces the original. We did not add the full DiCE objective: its
causal magic-box also keeps the cross-time-step terms LVC drops, unbiased but with a
variance that grows with the horizon, the trade-off ProMP measured in LVC's favour.

Two other learners are the same class with ``inner_steps = 0``: the "pretrained on all
tasks" baseline (policy gradient on the mixture of tasks, fine-tuned at test time), and,
with a :class:`~attnmeta.rl.policies.HistoryAttentionPolicy` and ``trial_episodes > 1``,
an in-context learner trained on multi-episode trials with its history carried across
episodes (RL², Duan et al., 2016; SNAIL, Mishra et al., ICLR 2018): it adapts by attending,
with no gradient step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Sequence

import torch
from torch import Tensor
from torch.func import functional_call

from attnmeta import kernels
from attnmeta.learners.base import Params, StepOutput
from attnmeta.learners.gradient import GradientLearner
from attnmeta.learners.inner_loop import inner_sgd
from attnmeta.rl.advantages import PolicyGradientLoss, policy_gradient_data
from attnmeta.rl.registry import RLLearnerEntry, register_rl_learner
from attnmeta.rl.rollout import Trajectories, per_task_forward, sample_trajectories, shared_forward
from attnmeta.rl.task_family import TaskFamily

__all__ = ["TaskBatch", "PolicyGradientMAML"]


@dataclass
class TaskBatch:
    """One meta-iteration's tasks ``[T, task_dim]`` and the seed of its rollouts."""

    tasks: Tensor
    seed: int

    @property
    def num_tasks(self) -> int:
        return self.tasks.shape[0]

    def __len__(self) -> int:
        """The units the training loop splits this batch into: its tasks."""
        return self.num_tasks

    def slice(self, start: int, stop: int) -> "TaskBatch":
        """Tasks ``start:stop`` (``train.backward_chunk``); the chunk's rollouts get their own
        seed, so a chunked meta-batch is a different (equally valid) sample."""
        return TaskBatch(self.tasks[start:stop], self.seed + start)


class PolicyGradientMAML(GradientLearner):
    """MAML with policy-gradient inner steps (see the module docstring).

    Kernels (:mod:`attnmeta.kernels`): rollouts with per-task parameters run under
    ``torch.vmap`` and declare it (:meth:`sample`); the meta-training step declares its
    double backward unless ``first_order``.

    Args:
        policy: an :mod:`attnmeta.rl.policies` policy (``tokens`` -> distribution outputs).
        family: the task family to sample episodes from.
        inner_lr: inner step size α (0.1 in the paper).
        inner_steps: policy-gradient steps per task in meta-training (0: no adaptation).
        first_order: drop second-order terms (FOMAML).
        episodes_per_task: trajectories per task per policy-gradient step (20 in the paper).
        trial_episodes: episodes per trial, history carried across them (in-context).
        gamma: discount of the returns (0.99, rllab's default that MAML uses).
        baseline: ``"linear"`` (rllab's linear feature baseline, per task) or ``"none"``.
        normalize_advantages: standardise advantages per task (rllab's ``center_adv``).
        estimator: inner surrogate, ``"lvc"`` or ``"vpg"`` (see :class:`PolicyGradientLoss`).
    """

    # A policy's outputs parameterise an action distribution, not n_way class logits.
    needs_head: ClassVar[bool] = False
    display_name: ClassVar[str] = "MAML (policy gradient)"

    def __init__(self, policy: torch.nn.Module, family: TaskFamily, inner_lr: float = 0.1,
                 inner_steps: int = 1, first_order: bool = False, episodes_per_task: int = 20,
                 trial_episodes: int = 1, gamma: float = 0.99, baseline: str = "linear",
                 normalize_advantages: bool = True, estimator: str = "lvc") -> None:
        super().__init__(policy, inner_lr, inner_steps,
                         loss_fn=PolicyGradientLoss(policy.distribution, estimator))
        self.first_order = first_order
        if episodes_per_task < 1 or trial_episodes < 1:
            raise ValueError(f"episodes_per_task={episodes_per_task}, trial_episodes="
                             f"{trial_episodes}: expected >= 1")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma={gamma}: expected a discount in [0, 1]")
        if baseline not in ("linear", "none"):
            raise ValueError(f"baseline={baseline!r}: expected 'linear' or 'none'")
        self.family = family
        self.episodes_per_task, self.trial_episodes = episodes_per_task, trial_episodes
        self.gamma, self.baseline = gamma, baseline
        self.normalize_advantages = normalize_advantages

    # -- the pieces -----------------------------------------------------------------------
    def sample(self, tasks: Tensor, generator: torch.Generator,
               task_params: Sequence[Params] | None = None, episodes: int | None = None,
               trial_episodes: int | None = None) -> Trajectories:
        """Trajectories of every task, with the meta-parameters or ``task_params[t]``
        (then the policy runs under ``torch.vmap`` over tasks)."""
        if task_params is None:
            forward = shared_forward(self.model)
        else:
            _, frozen = self._split_params()
            stacked = {name: torch.stack([p[name].detach() for p in task_params])
                       for name in task_params[0]}
            forward = per_task_forward(self.model, stacked,
                                       {n: t.detach() for n, t in frozen.items()})
        with kernels.differentiable(vmap=task_params is not None):
            return sample_trajectories(self.family, self.model, forward, tasks,
                                       episodes or self.episodes_per_task, generator,
                                       trial_episodes or self.trial_episodes)

    def policy_gradient_data(self, trajectories: Trajectories) -> tuple[Tensor, Tensor]:
        """(inputs ``[T, E, L, F]``, targets ``[T, E, L, C + 2]``) for ``self.loss_fn``."""
        return policy_gradient_data(trajectories, self.gamma, self.baseline,
                                    self.normalize_advantages)

    def adapt_tasks(self, task_params: Sequence[Params], frozen: dict[str, Tensor],
                    lrs: dict[str, Tensor | float], inputs: Tensor, targets: Tensor,
                    first_order: bool) -> list[Params]:
        """One policy-gradient step per task: the core :func:`inner_sgd` on task ``t``'s data."""
        return [inner_sgd(self.model, params, frozen, inputs[t], targets[t], self.loss_fn,
                          lrs, 1, first_order)
                for t, params in enumerate(task_params)]

    # -- meta-training --------------------------------------------------------------------
    def training_step(self, batch: TaskBatch) -> StepOutput:
        """Outer loss of one meta-iteration; metrics are mean undiscounted episode returns."""
        generator = torch.Generator().manual_seed(batch.seed)
        params, frozen = self._split_params()
        lrs = self._step_sizes()
        # Second order differentiates the inner policy-gradient steps (`sample` declares the
        # vmap of the per-task rollouts itself).
        with kernels.differentiable(double_backward=not self.first_order):
            trajectories = self.sample(batch.tasks, generator)
            before = trajectories.episode_returns().mean().item()
            task_params: list[Params] = [params] * batch.tasks.shape[0]
            for _ in range(self.inner_steps):
                inputs, targets = self.policy_gradient_data(trajectories)
                task_params = self.adapt_tasks(task_params, frozen, lrs, inputs, targets,
                                               self.first_order)
                trajectories = self.sample(batch.tasks, generator, task_params)
            inputs, targets = self.policy_gradient_data(trajectories)
            if self.inner_steps == 0:  # one forward for all tasks
                outputs = self.model(inputs)
                losses = [self.loss_fn(outputs[t], targets[t]) for t in range(len(task_params))]
            else:
                losses = [self.loss_fn(functional_call(self.model, {**frozen, **p}, (inputs[t],)),
                                       targets[t])
                          for t, p in enumerate(task_params)]
        loss = torch.stack(losses).mean()
        if self.inner_steps == 0:
            metrics = {"return": before}
        else:
            metrics = {"return_before": before,
                       "return_after": trajectories.episode_returns().mean().item()}
        return StepOutput(loss, metrics)

    # -- evaluation -----------------------------------------------------------------------
    def adaptation_returns(self, tasks: Tensor, step_sizes: Sequence[float], episodes: int,
                           generator: torch.Generator) -> Tensor:
        """Mean episode return per task before and after each adaptation step, ``[T, 1 + S]``.

        Step ``k`` samples ``episodes`` fresh episodes with the current parameters and takes
        one policy-gradient step of size ``step_sizes[k]`` (the paper evaluates with 0.1,
        then 0.05). Column 0 is the unadapted policy.
        """
        params, frozen = self._split_params()
        params = {n: p.detach() for n, p in params.items()}
        frozen = {n: t.detach() for n, t in frozen.items()}
        task_params: list[Params] = [params] * tasks.shape[0]
        with torch.no_grad():  # first order; `sample` declares its vmap
            trajectories = self.sample(tasks, generator, None, episodes, 1)
            curve = [trajectories.episode_returns().mean((1, 2))]
            for step_size in step_sizes:
                inputs, targets = self.policy_gradient_data(trajectories)
                lrs = {name: step_size for name in params}
                task_params = self.adapt_tasks(task_params, frozen, lrs, inputs, targets, True)
                trajectories = self.sample(tasks, generator, task_params, episodes, 1)
                curve.append(trajectories.episode_returns().mean((1, 2)))
        return torch.stack(curve, dim=1)

    def trial_returns(self, tasks: Tensor, trial_episodes: int, episodes: int,
                      generator: torch.Generator) -> Tensor:
        """In-context adaptation: mean return of the 1st … Nth episode of a trial whose
        history is carried across episodes, ``[T, trial_episodes]``; no gradient step."""
        with torch.no_grad():
            trajectories = self.sample(tasks, generator, None, episodes, trial_episodes)
        return trajectories.episode_returns().mean(1)


# every learner is this class; the names differ in how it adapts to a task
register_rl_learner("maml", RLLearnerEntry(adapts_by_gradient=True))
register_rl_learner("fomaml", RLLearnerEntry(adapts_by_gradient=True, first_order=True))
register_rl_learner("pretrained", RLLearnerEntry())  # the baseline: no adaptation
register_rl_learner("incontext", RLLearnerEntry(in_context=True))
