"""Test-time fine-tuning: P>M>F's third stage (Hu, Li, Stühmer, Kim & Hospedales, CVPR 2022,
"Pushing the Limits of Simple Pipelines for Few-Shot Learning: External Data and
Fine-Tuning Make a Difference", section 3.3; their ``ProtoNet_Finetune``: Adam on the
backbone, 50 steps, prototypes from the support set, the loss on an augmented copy of it).

Before a task is predicted, the encoder of a learner that reads embeddings (ProtoNets, the
pretraining classifier's prototypes, FEAT, Matching Networks, the in-context learner, and
any of them over a frozen encoder) takes ``steps`` Adam steps on that task's support set:
the support set, augmented, plays the queries of a pseudo-episode whose support is the
support set itself, scored by the learner's own head. The tuned weights are a function of
the support set only (no module is modified), so the queries never influence them.
"""

from __future__ import annotations

from typing import Callable, ClassVar, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from attnmeta.errors import InputError
from attnmeta.learners.base import MetaLearner, Params
from attnmeta.learners.inner_loop import adam, descend

__all__ = ["SupportFinetuning"]

Augment = Callable[[Tensor, torch.Generator], Tensor]


class SupportFinetuning(MetaLearner):
    """``learner`` whose encoder is fine-tuned on each task's support set before it predicts.

    Args:
        learner: a learner that declares :meth:`MetaLearner.encoder_and_head`.
        steps: Adam steps per task (P>M>F: 50).
        lr: Adam's step size (P>M>F picks it on validation tasks from a small grid).
        augment: ``(images [S, ...], generator) -> images``: what turns the support set
            into its pseudo-queries (e.g. random shifts).
        seed: the augmentation of a task is drawn from a generator of this seed, so the
            same support set always gives the same tuned weights.
    """

    adapts_by_gradient: ClassVar[bool] = True
    display_name = property(  # type: ignore[assignment]
        lambda self: f"{self.learner.display_name} + test-time fine-tuning")

    def __init__(self, learner: MetaLearner, steps: int, lr: float, augment: Augment,
                 seed: int = 0) -> None:
        super().__init__()
        parts = learner.encoder_and_head()
        if parts is None:
            raise InputError(f"{type(learner).__name__} cannot be fine-tuned at test time: "
                             "expected a learner over embeddings (protonet, feat, matching, "
                             "incontext, a pretrain run); MAML and Reptile adapt by their "
                             "own inner steps")
        if steps < 1 or not lr > 0:
            raise InputError(f"test-time fine-tuning with steps={steps}, lr={lr}: expected "
                             "steps >= 1 and lr > 0")
        self.learner = learner.eval()
        self.steps, self.lr, self.augment, self.seed = steps, lr, augment, seed

    @property
    def needs_head(self) -> bool:  # type: ignore[override]
        return self.learner.needs_head

    def _parts(self) -> tuple[nn.Module, Callable[[Tensor, Tensor, Tensor], Tensor]]:
        return self.learner.encoder_and_head()

    def tuned_encoder(self, support_x: Tensor, support_y: Tensor) -> Params:
        """The encoder's parameters and buffers after ``steps`` Adam steps on the pseudo-
        episode of one task's support set (``[S, ...]``, ``[S]``)."""
        encoder, head = self._parts()
        buffers = {n: b.detach() for n, b in encoder.named_buffers()}
        params = {n: p.detach() for n, p in encoder.named_parameters()}
        generator = torch.Generator().manual_seed(self.seed)
        count = support_x.shape[0]

        def support_gradient(current: Params) -> Params:
            pseudo_queries = self.augment(support_x, generator)
            with torch.enable_grad():
                leaves = {n: p.detach().requires_grad_() for n, p in current.items()}
                z = functional_call(encoder, {**buffers, **leaves},
                                    (torch.cat([support_x, pseudo_queries]),))
                logits = head(z[None, :count], support_y[None], z[None, count:])[0]
                loss = F.cross_entropy(logits, support_y)
                grads = torch.autograd.grad(loss, list(leaves.values()))
            return dict(zip(leaves, grads))

        params = descend(support_gradient, params, adam(self.lr, betas=(0.9, 0.999)),
                         self.steps, first_order=True)
        return {**buffers, **params}

    def predict(self, support_x: Tensor, support_y: Tensor, query_x: Tensor) -> Tensor:
        """Query logits ``[Q, N]`` of the learner's head over the tuned encoder."""
        return self.predict_fitted(self.fit_task(support_x, support_y), query_x)

    def fit_task(self, support_x: Tensor, support_y: Tensor, steps: int | None = None,
                 on_step: Callable[[int, int], None] | None = None) -> dict[str, Tensor]:
        """The tuned encoder's tensors (``encoder/<name>``) and the support inputs."""
        tuned = self.tuned_encoder(support_x, support_y)
        return {**{f"encoder/{n}": t for n, t in tuned.items()},
                "support_x": support_x, "support_y": support_y}

    def predict_fitted(self, task: Mapping[str, Tensor], query_x: Tensor) -> Tensor:
        encoder, head = self._parts()
        tuned = {n[len("encoder/"):]: t for n, t in task.items() if n.startswith("encoder/")}
        support_x, support_y = task["support_x"], task["support_y"]
        with torch.no_grad():  # support and queries in one call, as the learner's predict
            z = functional_call(encoder, tuned, (torch.cat([support_x, query_x]),))
            return head(z[None, :len(support_x)], support_y[None], z[None, len(support_x):])[0]

    def training_step(self, batch):  # pragma: no cover - an evaluation-time wrapper
        raise TypeError("test-time fine-tuning is an evaluation option, not a learner to train")
