"""What every meta-learner shares: the step interface the one training loop calls, the
capabilities a learner declares, and how a task is fitted once and predicted later. The
functional inner loop the gradient learners use is :mod:`attnmeta.learners.inner_loop`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnmeta.errors import InputError
from attnmeta.models.capabilities import TokenStatesEncoder, has_token_states
from attnmeta.norm import uses_batch_statistics
from attnmeta.tasks.episode import Episode

__all__ = ["MetaLearner", "EpisodeLearner", "StepOutput", "Params", "Head", "class_count",
           "query_metrics", "embed_episode", "TokenStatesEncoder"]

Params = dict[str, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]
# (support_z [T, S, D], support_y [T, S], query_z [T, Q, D]) -> logits [T, Q, N]
Head = Callable[[Tensor, Tensor, Tensor], Tensor]


def class_count(labels: Tensor) -> int:
    """Number of classes ``N`` of an episode whose labels ``[..., S]`` are ``0 … N-1``
    (every N-way episode of :mod:`attnmeta.tasks`); reads one value back from the device.

    The largest label, not the distinct count: an episode is relabelled ``0 … N-1``, and a
    one-hot of width ``max + 1`` is what indexing by label needs.
    """
    return int(labels.max()) + 1


@dataclass
class StepOutput:
    """``loss``: the scalar the training loop back-propagates; ``metrics``: floats to log."""

    loss: Tensor
    metrics: dict[str, float] = field(default_factory=dict)


def query_metrics(loss: Tensor, predictions: Tensor, query_y: Tensor) -> dict[str, float]:
    """Loss, plus accuracy when the targets are class indices."""
    metrics = {"loss": loss.detach().item()}
    if not query_y.is_floating_point():
        metrics["accuracy"] = (predictions.argmax(-1) == query_y).float().mean().item()
    return metrics


class MetaLearner(nn.Module):
    """Base class. Subclasses implement :meth:`training_step` and :meth:`predict`.

    ``training_step(batch)`` gets an :class:`Episode` batch (leading task dim ``T``) and
    returns a :class:`StepOutput` whose ``loss`` the optimiser minimises over
    ``learner.parameters()``. ``predict(support_x, support_y, query_x)`` takes one task and
    returns its query predictions (logits or regression outputs).

    Capabilities, declared per class so that run code asks instead of testing classes:

    Attributes:
        adapts_by_gradient: the learner adapts to a task by gradient steps on its support
            set (:class:`~attnmeta.learners.gradient.GradientLearner`: MAML, Reptile); its
            ``predict`` then takes ``steps`` and defaults to its ``eval_steps``. False: it
            adapts in one forward pass over the episode (ProtoNets, Matching Networks, FEAT,
            the in-context learners).
        needs_head: the learner predicts with a classification head of ``n_way`` outputs
            built into its model, so the backbone must be built with ``out_dim = n_way`` and
            the test episodes must have the training ``n_way`` (MAML, Reptile). False: the
            backbone returns features and any ``n_way`` works.
        display_name: how figures and reports name the learner.
        strategies: the ``learner.strategy`` values it takes (how a meta-batch's tasks run;
            one way for learners without an inner loop, which read no strategy).
        head_inits: the ``learner.head_init`` values it takes: ``"meta"`` (its head, if any,
            starts each task at the meta-learned weights) or also ``"prototypes"``
            (Proto-MAML: MAML's head starts at the support set's prototypes).
        reads_spatial_tokens: the learner compares the parts of images: its encoder must
            return a backbone's spatial tokens flattened, ``[n, L·D]``
            (:class:`~attnmeta.models.spatial.SpatialTokens`, built by the run code around a
            backbone that declares ``spatial_tokens``), and it takes their ``grid`` and
            ``token_dim``, kept as attributes of those names (:meth:`token_grid`;
            CrossTransformers, the pair matcher, ``incontext_spatial``). False: one vector per image.

    A learner that can show where it looks overrides :meth:`attention_maps` (and
    :meth:`attention_map_names`).
    """

    adapts_by_gradient: ClassVar[bool] = False
    needs_head: ClassVar[bool] = False
    display_name: ClassVar[str] = "meta-learner"
    strategies: ClassVar[tuple[str, ...]] = ("loop", "vmap")
    head_inits: ClassVar[tuple[str, ...]] = ("meta",)
    reads_spatial_tokens: ClassVar[bool] = False

    def training_step(self, batch: Episode) -> StepOutput:
        raise NotImplementedError

    def predict(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, **kwargs) -> Tensor:
        raise NotImplementedError

    def predict_batch(self, batch: Episode, **kwargs) -> Tensor:
        """Query predictions ``[T, Q, ...]`` for every task of a batch (one task at a time)."""
        return torch.stack([
            self.predict(task.support_x, task.support_y, task.query_x, **kwargs)
            for task in (batch.task(i) for i in range(batch.num_tasks))
        ])

    # -- a task fitted once, its queries predicted later (attnmeta.fewshot) ----------------
    def fit_task(self, support_x: Tensor, support_y: Tensor, steps: int | None = None,
                 on_step: Callable[[int, int], None] | None = None) -> dict[str, Tensor]:
        """What this learner keeps of one task's support set (``support_x [S, ...]``,
        ``support_y [S]``) to predict its queries later: named tensors, saved as they are.

        Learners override it with what they adapt (parameters, embeddings); this default
        keeps the support set itself. ``steps``: inner steps where the learner adapts by
        gradient (default its ``eval_steps``), each reported as ``on_step(done, steps)``.
        """
        return {"support_x": support_x, "support_y": support_y}

    def predict_fitted(self, task: Mapping[str, Tensor], query_x: Tensor) -> Tensor:
        """Predictions ``[Q, ...]`` for ``query_x [Q, ...]`` from :meth:`fit_task`'s
        ``task``: the same as :meth:`predict` on the support set it kept."""
        return self.predict(task["support_x"], task["support_y"], query_x)

    def explain_fitted(self, task: Mapping[str, Tensor], query_x: Tensor) -> dict[str, Tensor]:
        """:meth:`attention_maps` of the fitted task for ``query_x`` (``{}`` for a learner
        without attention)."""
        if not self.attention_map_names():
            return {}
        return self.attention_maps(task["support_x"], task["support_y"], query_x)

    def encoder_and_head(self) -> tuple[nn.Module, Head] | None:
        """``(encoder [n, ...] -> [n, D], head)`` of a learner that predicts from embeddings
        (see :data:`Head`; what :mod:`attnmeta.learners.finetune` tunes through), else None."""
        return None

    def backbone(self) -> nn.Module | None:
        """The network the learner embeds or adapts with (what figures look inside: a text
        encoder's token attention), or None where it has none of its own."""
        return None

    def token_encoder(self) -> TokenStatesEncoder | None:
        """:meth:`backbone` where its class declares ``token_states`` (a text encoder whose
        token attention can be drawn), else None."""
        backbone = self.backbone()
        return backbone if backbone is not None and has_token_states(backbone) else None

    def attention_map_names(self) -> tuple[str, ...]:
        """The keys :meth:`attention_maps` returns for this learner; ``()`` if it has none."""
        return ()

    def token_grid(self) -> tuple[int, int] | None:
        """``(H, W)`` of the spatial tokens a learner that :attr:`reads_spatial_tokens`
        compares (its ``grid``: the ``L = H·W`` row-major locations of its
        ``"correspondence"`` maps, what a drawing places on the images), else None."""
        return tuple(self.grid) if self.reads_spatial_tokens else None  # type: ignore

    def attention_maps(self, support_x: Tensor, support_y: Tensor, query_x: Tensor,
                       steps: int | None = None) -> dict[str, Tensor]:
        """The attention weights this learner computes when it predicts one task
        (``support_x [S, ...]``, ``support_y [S]``, ``query_x [Q, ...]``, no task dim).

        Keys, by learner: ``"query_support"`` ``[Q, S]`` (Matching Networks, the in-context
        classifier), ``"prototypes"`` ``[H, N, N]`` (FEAT), ``"patch_attention"``
        ``[Q, g, g]`` (MAML / Reptile over a vision transformer, at the parameters adapted
        by ``steps`` inner steps, default ``eval_steps``), ``"correspondence"``
        ``[Q, L, S, L]`` (the learners that read spatial tokens: how much each query
        location attended to each location of each support image, heads averaged). No
        gradient is recorded.
        """
        raise InputError(f"{type(self).__name__} has no attention to draw: expected "
                         "MatchingNet, FEAT, InContextClassifier, or MAML/Reptile over a "
                         "vision transformer (model.backbone=vit)")


class EpisodeLearner(MetaLearner):
    """A learner that adapts by a forward pass over the episode (no gradient steps).

    It is an ``encoder`` (``[n, *x_shape] -> [n, D]``) and a head over the embeddings:
    subclasses implement :meth:`logits_from_features` (``[T, S, D]``, ``[T, S]``,
    ``[T, Q, D]`` -> ``[T, Q, N]``); :meth:`logits` embeds support and query in one encoder
    call and applies it. Training minimises ``self.loss_fn`` on the query predictions.
    A learner with attention implements :meth:`feature_attention_maps` the same way.
    """

    loss_fn: Callable[[Tensor, Tensor], Tensor] = staticmethod(F.cross_entropy)
    encoder: nn.Module

    def logits_from_features(self, support_z: Tensor, support_y: Tensor, query_z: Tensor
                             ) -> Tensor:
        """The head: query logits ``[T, Q, N]`` from embeddings ``[T, S, D]``, ``[T, S]``,
        ``[T, Q, D]``. The one method a new learner writes: training (:meth:`logits`),
        fitting (:meth:`fit_task`, :meth:`predict_fitted`) and export all call it."""
        raise NotImplementedError(f"{type(self).__name__} has no head: expected it to "
                                  "implement logits_from_features(support_z, support_y, "
                                  "query_z) -> [T, Q, N]")

    def logits(self, support_x: Tensor, support_y: Tensor, query_x: Tensor) -> Tensor:
        """Query logits ``[T, Q, N]`` for batched episodes (``[T, S, ...]``, ``[T, S]``,
        ``[T, Q, ...]``)."""
        support_z, query_z = embed_episode(self.encoder, support_x, query_x)
        return self.logits_from_features(support_z, support_y, query_z)

    def training_step(self, batch: Episode) -> StepOutput:
        predictions = self.logits(batch.support_x, batch.support_y, batch.query_x)
        loss = self.loss_fn(predictions.flatten(0, 1), batch.query_y.flatten(0, 1))
        return StepOutput(loss, query_metrics(loss, predictions, batch.query_y))

    def predict(self, support_x: Tensor, support_y: Tensor, query_x: Tensor) -> Tensor:
        with torch.no_grad():
            return self.logits(support_x[None], support_y[None], query_x[None])[0]

    def predict_batch(self, batch: Episode) -> Tensor:
        with torch.no_grad():
            return self.logits(batch.support_x, batch.support_y, batch.query_x)

    def encoder_and_head(self) -> tuple[nn.Module, Head]:
        return self.encoder, self.logits_from_features

    def backbone(self) -> nn.Module:
        return self.encoder

    def feature_attention_maps(self, support_z: Tensor, support_y: Tensor, query_z: Tensor
                               ) -> dict[str, Tensor]:
        """:meth:`attention_maps` from embeddings of one task (``[S, D]``, ``[S]``,
        ``[Q, D]``)."""
        return super().attention_maps(support_z, support_y, query_z)

    def attention_maps(self, support_x: Tensor, support_y: Tensor, query_x: Tensor,
                       steps: int | None = None) -> dict[str, Tensor]:
        """The maps of :meth:`feature_attention_maps` for one task of raw inputs (``steps``
        is ignored: no inner loop). Support and query are embedded in one encoder call, as
        in :meth:`logits` (an encoder with batch statistics sees the same batch)."""
        with torch.no_grad():
            support_z, query_z = embed_episode(self.encoder, support_x[None], query_x[None])
            return self.feature_attention_maps(support_z[0], support_y, query_z[0])

    # -- a task fitted once, its queries predicted later (attnmeta.fewshot) ----------------
    def fit_task(self, support_x: Tensor, support_y: Tensor, steps: int | None = None,
                 on_step: Callable[[int, int], None] | None = None) -> dict[str, Tensor]:
        """The support set's embeddings ``support_z [S, D]`` and ``support_y [S]``; over an
        encoder that normalises by batch statistics, whose embedding of an example depends
        on the batch it is in, the support inputs themselves (``support_x``), so that
        :meth:`predict_fitted` embeds them with the queries as :meth:`predict` does."""
        if uses_batch_statistics(self.encoder):
            return super().fit_task(support_x, support_y, steps)
        with torch.no_grad():
            return {"support_z": self.encoder(support_x), "support_y": support_y}

    def predict_fitted(self, task: Mapping[str, Tensor], query_x: Tensor) -> Tensor:
        if "support_x" in task:
            return super().predict_fitted(task, query_x)
        with torch.no_grad():
            query_z = self.encoder(query_x)
            return self.logits_from_features(task["support_z"][None], task["support_y"][None],
                                             query_z[None])[0]

    def explain_fitted(self, task: Mapping[str, Tensor], query_x: Tensor) -> dict[str, Tensor]:
        if "support_x" in task:
            return super().explain_fitted(task, query_x)
        if not self.attention_map_names():
            return {}
        with torch.no_grad():
            return self.feature_attention_maps(task["support_z"], task["support_y"],
                                               self.encoder(query_x))


def embed_episode(encoder: nn.Module, support_x: Tensor, query_x: Tensor) -> tuple[Tensor, Tensor]:
    """Encode ``support_x [T, S, ...]`` and ``query_x [T, Q, ...]`` in one encoder call
    (big batches keep the cores busy) -> ``([T, S, D], [T, Q, D])``."""
    inputs = torch.cat([support_x, query_x], dim=1)
    z = encoder(inputs.flatten(0, 1)).reshape(*inputs.shape[:2], -1)
    return z[:, : support_x.shape[1]], z[:, support_x.shape[1]:]
