"""Any learner trained on the features of a frozen encoder (CAML's recipe: Fifty et al.,
"Context-Aware Meta-Learning", ICLR 2024, over a frozen pretrained encoder)."""

from __future__ import annotations

from typing import Callable, Mapping

import torch
from torch import Tensor, nn

from attnmeta.learners.base import MetaLearner, StepOutput

__all__ = ["FrozenFeatureLearner", "EMBED_BATCH"]

EMBED_BATCH = 8  # inputs embedded at a time (see FrozenFeatureLearner.embed)


class FrozenFeatureLearner(MetaLearner):
    """``learner`` (whose own encoder is the identity) reads features that the frozen
    ``frozen_encoder`` computed once per example; its batches hold those features, not
    the raw inputs (see :func:`attnmeta.runs.features.cached_features`).

    The frozen encoder is part of the state (so a checkpoint can embed new data) but is
    never trained: its parameters do not require gradients and it stays in eval mode.
    Capabilities are the inner learner's; :meth:`attention_maps` alone takes raw inputs.
    """

    def __init__(self, frozen_encoder: nn.Module, learner: MetaLearner) -> None:
        super().__init__()
        self.frozen_encoder = frozen_encoder.requires_grad_(False).eval()
        self.learner = learner

    # what the inner learner declares, asked of this instance
    adapts_by_gradient = property(lambda self: self.learner.adapts_by_gradient)  # type: ignore
    needs_head = property(lambda self: self.learner.needs_head)  # type: ignore
    reads_spatial_tokens = property(  # type: ignore
        lambda self: self.learner.reads_spatial_tokens)
    display_name = property(  # type: ignore
        lambda self: f"{self.learner.display_name} (frozen features)")

    def train(self, mode: bool = True) -> "FrozenFeatureLearner":
        super().train(mode)
        self.frozen_encoder.eval()
        return self

    def embed(self, x: Tensor) -> Tensor:
        """Features ``[n, D]`` of inputs ``x [n, ...]`` (no gradient), :data:`EMBED_BATCH`
        inputs at a time: the frozen encoder is in eval mode, so each input's features do
        not depend on the others, and a support set of hundreds of photos neither holds all
        their activations at once nor runs at the slow large-batch speed of depthwise
        convolutions (``benchmarks/results/encoder_speed.md``)."""
        with torch.no_grad():
            return torch.cat([self.frozen_encoder(chunk) for chunk in x.split(EMBED_BATCH)])

    def training_step(self, batch) -> StepOutput:
        return self.learner.training_step(batch)

    def predict(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, **kwargs) -> Tensor:
        return self.learner.predict(support_x, support_y, query_x, **kwargs)

    def predict_batch(self, batch, **kwargs) -> Tensor:
        return self.learner.predict_batch(batch, **kwargs)

    def attention_map_names(self) -> tuple[str, ...]:
        return self.learner.attention_map_names()

    def token_grid(self) -> tuple[int, int] | None:
        return self.learner.token_grid()

    def attention_maps(self, support_x: Tensor, support_y: Tensor, query_x: Tensor,
                       steps: int | None = None) -> dict[str, Tensor]:
        """The inner learner's maps for one task of raw inputs (images, to draw them over),
        embedded here by the frozen encoder."""
        return self.learner.attention_maps(self.embed(support_x), support_y,
                                           self.embed(query_x), steps)

    def encoder_and_head(self):
        """The frozen encoder (tunable at test time all the same) and the inner learner's
        logits over its features, where the inner learner reads embeddings."""
        if self.learner.encoder_and_head() is None:
            return None
        return self.frozen_encoder, self.learner.logits

    # -- a task fitted once (attnmeta.fewshot): raw inputs in, the inner learner's state --
    def fit_task(self, support_x: Tensor, support_y: Tensor, steps: int | None = None,
                 on_step: Callable[[int, int], None] | None = None) -> dict[str, Tensor]:
        """The inner learner's :meth:`fit_task` on the features of raw ``support_x``."""
        return self.learner.fit_task(self.embed(support_x), support_y, steps, on_step)

    def predict_fitted(self, task: Mapping[str, Tensor], query_x: Tensor) -> Tensor:
        return self.learner.predict_fitted(task, self.embed(query_x))

    def explain_fitted(self, task: Mapping[str, Tensor], query_x: Tensor) -> dict[str, Tensor]:
        return self.learner.explain_fitted(task, self.embed(query_x))
