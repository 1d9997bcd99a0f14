"""In-context learners: a network reads the support set and predicts the query, no steps
(one vector per image, or, ``incontext_spatial``, every spatial token of every image)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnmeta.attention import TransformerBlock
from attnmeta.errors import ConfigError
from attnmeta.learners.base import EpisodeLearner, class_count, embed_episode
from attnmeta.learners.protonet import prototype_logits, prototypes
from attnmeta.learners.registry import Backbone, LearnerOptions, register_learner
from attnmeta.models.spatial import unflatten_tokens
from attnmeta.norm import LayerNorm
from attnmeta.settings import PROBABILITY, setting

__all__ = ["InContextLearner", "InContextClassifier", "InContextOptions",
           "InContextSpatialClassifier", "InContextSpatialOptions", "support_query_mask",
           "spatial_support_query_mask", "elmes", "LABEL_ENCODINGS"]

LABEL_ENCODINGS = ("learned", "elmes")


class InContextLearner(EpisodeLearner):
    """Meta-train a set-conditioned model ``model(support_x, support_y, query_x)`` end to end.

    The SNAIL / CAML / attentive-neural-process family (Mishra et al., ICLR 2018;
    Fifty et al., ICLR 2024; Kim et al., ICLR 2019): adaptation is a forward pass in which
    the query attends over the support set. ``model`` takes batched tasks
    (``[T, S, ...]``, ``[T, S, ...]``, ``[T, Q, ...]``) and returns ``[T, Q, ...]``.
    """

    display_name: ClassVar[str] = "In-context learner"

    def __init__(self, model: nn.Module,
                 loss_fn: Callable[[Tensor, Tensor], Tensor] = F.mse_loss) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def logits(self, support_x: Tensor, support_y: Tensor, query_x: Tensor) -> Tensor:
        return self.model(support_x, support_y, query_x)


def support_query_mask(n_support: int, n_query: int, device: torch.device | None = None
                       ) -> Tensor:
    """Boolean attention mask ``[S+Q, S+Q]`` (True = may attend): support tokens attend to
    the support set; each query token attends to the support set and to itself only, so
    queries never see one another (no transduction: a query's prediction does not depend on
    which other queries share its episode)."""
    size = n_support + n_query
    mask = torch.zeros(size, size, dtype=torch.bool, device=device)
    mask[:, :n_support] = True
    # a float identity compared, not a bool one: onnxruntime has no boolean EyeLike
    mask[n_support:, n_support:] = torch.eye(n_query, device=device) > 0
    return mask


def spatial_support_query_mask(n_support: int, n_query: int, length: int,
                               device: torch.device | None = None) -> Tensor:
    """:func:`support_query_mask` over images of ``length`` tokens each: ``[(S+Q)·L,
    (S+Q)·L]`` (True = may attend). Every token attends to all ``S·L`` support tokens; a
    query's tokens attend also to the tokens of their own image, never to another query's
    (no transduction)."""
    support = n_support * length
    size = support + n_query * length
    mask = torch.zeros(size, size, dtype=torch.bool, device=device)
    mask[:, :support] = True
    # same-image blocks: a float block-diagonal compared (onnxruntime has no boolean EyeLike)
    own = torch.eye(n_query, device=device).repeat_interleave(length, 0).repeat_interleave(
        length, 1)
    mask[support:, support:] = own > 0
    return mask


def elmes(n_classes: int, dim: int, dtype: torch.dtype | None = None,
          device: torch.device | None = None) -> Tensor:
    """CAML's Equal Length and Maximally Equiangular Set (ELMES) of ``n_classes`` label
    vectors in ``dim`` dimensions: ``[n_classes, dim]``.

    Fifty et al., "Context-Aware Meta-Learning", ICLR 2024 (the label encoding CAML fixes
    instead of learning): the vertices of a regular simplex centred at the origin,
    ``M* = sqrt(N/(N-1)) (I_N - 1 1^T / N)``, embedded in ``dim >= N``
    dimensions. Each row has norm 1 and every pair has cosine ``-1/(N-1)``. The authors'
    code (cfifty/CAML, src/models/TransformerEncoder.py, ``get_elmes``) multiplies ``M*``
    by a fixed random ``[dim, N]`` matrix with orthonormal columns (numpy seed 50, a QR);
    here the columns are the first ``N`` standard basis vectors (rows zero-padded to
    ``dim``), the same vectors up to a rotation, which the learned projection that reads
    the label embedding absorbs, and free of any random state.
    """
    if not 2 <= n_classes <= dim:
        raise ConfigError(f"ELMES of {n_classes} classes in {dim} dimensions: expected "
                          f"2 <= n_way <= {dim} (the label-embedding width)")
    simplex = math.sqrt(n_classes / (n_classes - 1)) * (
        torch.eye(n_classes, dtype=dtype, device=device) - 1.0 / n_classes)
    return F.pad(simplex, (0, dim - n_classes))


class InContextClassifier(EpisodeLearner):
    """An in-context few-shot classifier: a transformer reads the labelled support set as a
    sequence and classifies each query with no gradient step.

    The SNAIL / CAML family (Mishra et al., ICLR 2018; Fifty et al., "Context-Aware
    Meta-Learning", ICLR 2024). Each support example becomes the token
    ``W [f(x_i); e(y_i)]`` and each query ``W [f(x̂); u]``, where ``f`` is the image encoder,
    ``u`` a learned "label unknown" vector and ``e(y)`` the **label embedding**, one of
    :data:`LABEL_ENCODINGS`:

    * ``"learned"`` (default): ``e(y)`` is computed from the class's own support examples
      (a learned projection of the class mean), so it does not depend on which index a
      class was given at all. With no position embeddings, relabelling the classes of an
      episode permutes the logits exactly and reordering the support set leaves them
      unchanged (both tested).
    * ``"elmes"``: CAML's fixed equiangular encoding, ``e(y) = s * elmes(N, D)[y]`` with a
      learned scale ``s`` (CAML's ``elmes_scale``), built for each episode's ``N`` classes
      (see :func:`elmes`): every label is equally far from every other, but label ``y``
      always gets the same vector, so relabelling no longer permutes the logits exactly
      (by design: the model may learn what each label index's vector means).

    After ``depth`` pre-norm transformer blocks (queries attend to the support set and
    themselves, see :func:`support_query_mask`), a query's logits are the negative squared
    distances of its output token to the means of each class's support output tokens.

    Args:
        encoder: ``[n, *x_shape] -> [n, feature_dim]``.
        feature_dim: width of the encoder's output.
        d_model, depth, n_heads: of the transformer that reads the episode.
        dropout: inside the transformer blocks.
        label_encoding: ``"learned"`` or ``"elmes"`` (episodes of at most ``feature_dim``
            classes).
    """

    display_name: ClassVar[str] = "In-context learner"

    def __init__(self, encoder: nn.Module, feature_dim: int, d_model: int = 128,
                 depth: int = 2, n_heads: int = 4, dropout: float = 0.0,
                 label_encoding: str = "learned") -> None:
        super().__init__()
        if label_encoding not in LABEL_ENCODINGS:
            raise ValueError(f"label_encoding={label_encoding!r}: expected one of "
                             + ", ".join(map(repr, LABEL_ENCODINGS)))
        self.encoder = encoder
        self.label_encoding = label_encoding
        if label_encoding == "learned":
            self.label_embedding = nn.Linear(feature_dim, feature_dim)
        else:
            self.elmes_scale = nn.Parameter(torch.ones(1))
        self.unknown_label = nn.Parameter(torch.zeros(feature_dim))
        self.token = nn.Linear(2 * feature_dim, d_model)
        self.blocks = nn.ModuleList([TransformerBlock(d_model, n_heads, 2.0, dropout)
                                     for _ in range(depth)])
        self.norm = LayerNorm(d_model)

    def read_episode(self, support_z: Tensor, support_y: Tensor, query_z: Tensor,
                     need_weights: bool = False) -> tuple[Tensor, Tensor, list[Tensor | None]]:
        """Output tokens of the support set ``[T, S, d]`` and queries ``[T, Q, d]`` from the
        embeddings ``[T, S, D]``, ``[T, Q, D]``, and each block's attention
        ``[T, H, S+Q, S+Q]`` (``None`` unless ``need_weights``)."""
        n_way = class_count(support_y)
        if self.label_encoding == "learned":
            labels = self.label_embedding(prototypes(support_z, support_y, n_way))  # [T, N, D]
        else:
            vectors = elmes(n_way, support_z.shape[-1], support_z.dtype, support_z.device)
            labels = (self.elmes_scale * vectors).expand(support_z.shape[0], -1, -1)
        support_labels = torch.gather(
            labels, 1, support_y[..., None].expand(-1, -1, labels.shape[-1]))
        query_labels = self.unknown_label.expand_as(query_z)
        tokens = self.token(torch.cat([
            torch.cat([support_z, support_labels], dim=-1),
            torch.cat([query_z, query_labels], dim=-1)], dim=1))
        n_support = support_z.shape[1]
        mask = support_query_mask(n_support, query_z.shape[1], tokens.device)
        weights = []
        for block in self.blocks:
            tokens, block_weights = block(tokens, mask=mask, need_weights=need_weights)
            weights.append(block_weights)
        tokens = self.norm(tokens)
        return tokens[:, :n_support], tokens[:, n_support:], weights

    def logits_from_features(self, support_z: Tensor, support_y: Tensor, query_z: Tensor
                             ) -> Tensor:
        """``[T, Q, N]``: negative squared distances to the class means of the support
        outputs."""
        support_out, query_out, _ = self.read_episode(support_z, support_y, query_z)
        centres = prototypes(support_out, support_y, class_count(support_y))
        return prototype_logits(query_out, centres)

    def attention(self, support_x: Tensor, support_y: Tensor, query_x: Tensor) -> Tensor:
        """Last block's query-over-support attention, averaged over heads: ``[T, Q, S]``
        (each row sums to 1 less the query's attention to itself)."""
        support_z, query_z = embed_episode(self.encoder, support_x, query_x)
        return self.feature_attention(support_z, support_y, query_z)

    def feature_attention(self, support_z: Tensor, support_y: Tensor, query_z: Tensor) -> Tensor:
        """:meth:`attention` from embeddings ``[T, S, D]``, ``[T, Q, D]``."""
        _, _, weights = self.read_episode(support_z, support_y, query_z, need_weights=True)
        n_support = support_z.shape[1]
        return weights[-1].mean(1)[:, n_support:, :n_support]

    def attention_map_names(self) -> tuple[str, ...]:
        return ("query_support",)

    def feature_attention_maps(self, support_z: Tensor, support_y: Tensor, query_z: Tensor
                               ) -> dict[str, Tensor]:
        """``{"query_support": [Q, S]}``: :meth:`attention` of one task (no task dim)."""
        return {"query_support": self.feature_attention(support_z[None], support_y[None],
                                                        query_z[None])[0]}


@dataclass
class InContextOptions(LearnerOptions):
    """``learner.name: incontext``'s keys; its transformer's depth and heads are the
    model section's (``model.depth``, ``model.heads``)."""

    dropout: float = setting(0.5, **PROBABILITY)
    # label vectors from each class's support (learned) or CAML's fixed ELMES
    label_encoding: str = setting("learned", choices=LABEL_ENCODINGS)

    def problems(self, config: Any) -> list[tuple[str, Any, str]]:
        """Its transformer has ``model.depth`` blocks: at least one."""
        if config.model.depth < 1:
            return [("model.depth", config.model.depth, ">= 1 (0, no layers, is for "
                     "model.backbone='wordllama' with a learner other than 'incontext', "
                     "which reads model.depth too)")]
        return []


def _build(spec: InContextOptions, backbone: Backbone) -> InContextClassifier:
    width = backbone.width(spec.name)
    return InContextClassifier(backbone.model, width, d_model=2 * width,
                               depth=backbone.config.depth, n_heads=backbone.config.heads,
                               dropout=spec.dropout, label_encoding=spec.label_encoding)


register_learner("incontext", InContextClassifier, _build, options=InContextOptions)

class InContextSpatialClassifier(InContextClassifier):
    """The in-context classifier reading every spatial token of every image instead of
    one vector per image: CAML's sequence (Fifty et al., "Context-Aware Meta-Learning",
    ICLR 2024; SNAIL, Mishra et al., ICLR 2018) over the parts of the images, as the
    relational learners compare parts (CrossTransformers, Doersch et al., NeurIPS 2020).

    The encoder returns ``L = H·W`` tokens of width ``D`` per image, flattened
    (:class:`~attnmeta.models.spatial.SpatialTokens`). The class-label vector ``e(y_i)``
    of support image ``i`` (as :class:`InContextClassifier`: ``"learned"`` from the mean
    over the class's images of their mean token, or CAML's ``"elmes"``) is joined to
    *every* one of its tokens, ``W [t_im; e(y_i)] + P_m``; each query token gets the
    "label unknown" vector, ``W [t̂_m; u] + P_m``, where ``P_m`` is a learned embedding of
    location ``m`` within an image (never of the support order). The transformer reads
    the ``S·L`` support tokens and each query's ``L`` tokens (all queries in one sequence,
    each seeing the support tokens and its own, :func:`spatial_support_query_mask`); an
    image's output is the mean of its ``L`` output tokens, and the logits are, as in
    :class:`InContextClassifier`, negative squared distances to the class means of the
    support outputs. It promises what the pooled learner promises: with ``"learned"``
    labels relabelling the classes permutes the logits exactly and reordering the support
    set leaves them unchanged (tested); with ``"elmes"`` label ``y`` keeps its fixed vector.

    Cost per block: ``((S + Q)·L)²`` attention scores per head (masked, the queries' rows
    use ``S·L + L`` of them), ``L²`` times the pooled learner's; Conv4 at 28×28 (``L = 9``),
    20-way 1-shot, 100 queries: 1 080² = 1.17 M scores per head (4.7 MB float32), against
    14 400 pooled.

    Args:
        encoder: ``[n, *x_shape] -> [n, L·D]`` flattened spatial tokens.
        grid: ``(H, W)`` of the token map; token_dim: ``D``.
        d_model, depth, n_heads, dropout, label_encoding: as :class:`InContextClassifier`
            (``"elmes"``: episodes of at most ``token_dim`` classes).
    """

    display_name: ClassVar[str] = "In-context learner (spatial tokens)"
    reads_spatial_tokens: ClassVar[bool] = True

    def __init__(self, encoder: nn.Module, grid: tuple[int, int], token_dim: int,
                 d_model: int = 128, depth: int = 2, n_heads: int = 4, dropout: float = 0.0,
                 label_encoding: str = "learned") -> None:
        super().__init__(encoder, token_dim, d_model=d_model, depth=depth, n_heads=n_heads,
                         dropout=dropout, label_encoding=label_encoding)
        self.grid, self.token_dim = tuple(grid), token_dim
        self.num_tokens = grid[0] * grid[1]
        self.position = nn.Parameter(torch.randn(self.num_tokens, d_model) * 0.02)

    def read_episode(self, support_z: Tensor, support_y: Tensor, query_z: Tensor,
                     need_weights: bool = False) -> tuple[Tensor, Tensor, list[Tensor | None]]:
        """Each image's output (the mean of its output tokens) for the support set
        ``[T, S, d]`` and the queries ``[T, Q, d]`` from flattened tokens ``[T, S, L·D]``,
        ``[T, Q, L·D]``, and each block's attention ``[T, H, (S+Q)·L, (S+Q)·L]`` (``None``
        unless ``need_weights``; support tokens first, image by image, location by
        location)."""
        length = self.num_tokens
        support = unflatten_tokens(support_z, length, self.token_dim)    # [T, S, L, D]
        query = unflatten_tokens(query_z, length, self.token_dim)        # [T, Q, L, D]
        n_way = class_count(support_y)
        if self.label_encoding == "learned":
            labels = self.label_embedding(prototypes(support.mean(2), support_y, n_way))
        else:
            vectors = elmes(n_way, self.token_dim, support.dtype, support.device)
            labels = (self.elmes_scale * vectors).expand(support.shape[0], -1, -1)
        support_labels = torch.gather(                                   # [T, S, D]
            labels, 1, support_y[..., None].expand(-1, -1, labels.shape[-1]))
        support_tokens = self.token(torch.cat(
            [support, support_labels[:, :, None].expand_as(support)], dim=-1)) + self.position
        query_tokens = self.token(torch.cat(
            [query, self.unknown_label.expand_as(query)], dim=-1)) + self.position
        n_support = support_tokens.shape[1]
        # flatten, not sizes read off a shape: an ONNX trace keeps the query count dynamic
        tokens = torch.cat([support_tokens.flatten(1, 2), query_tokens.flatten(1, 2)], dim=1)
        mask = spatial_support_query_mask(n_support, query_z.shape[1], length, tokens.device)
        weights = []
        for block in self.blocks:
            tokens, block_weights = block(tokens, mask=mask, need_weights=need_weights)
            weights.append(block_weights)
        tokens = self.norm(tokens)
        split = n_support * length
        return (tokens[:, :split].unflatten(1, (-1, length)).mean(2),
                tokens[:, split:].unflatten(1, (-1, length)).mean(2), weights)

    def correspondence(self, support_z: Tensor, support_y: Tensor, query_z: Tensor) -> Tensor:
        """``[T, Q, L, S, L]``: the last block's attention from each query location to each
        location of each support image, heads averaged (a query location's row sums to 1
        less what it gives its own image's tokens)."""
        _, _, weights = self.read_episode(support_z, support_y, query_z, need_weights=True)
        length, n_support = self.num_tokens, support_z.shape[1]
        split = n_support * length
        rows = weights[-1].mean(1)[:, split:, :split]                    # [T, Q·L, S·L]
        return rows.unflatten(2, (n_support, length)).unflatten(1, (-1, length))

    def feature_attention(self, support_z: Tensor, support_y: Tensor, query_z: Tensor) -> Tensor:
        """``[T, Q, S]``: the attention each support image receives from a query, the
        last block's summed over the image's locations and averaged over the query's."""
        return self.correspondence(support_z, support_y, query_z).sum(-1).mean(2)

    def attention_map_names(self) -> tuple[str, ...]:
        return ("correspondence", "query_support")

    def feature_attention_maps(self, support_z: Tensor, support_y: Tensor, query_z: Tensor
                               ) -> dict[str, Tensor]:
        """``{"correspondence": [Q, L, S, L], "query_support": [Q, S]}`` for one task (no
        task dim), from one forward pass (see :meth:`correspondence`)."""
        found = self.correspondence(support_z[None], support_y[None], query_z[None])[0]
        return {"correspondence": found, "query_support": found.sum(-1).mean(1)}


@dataclass
class InContextSpatialOptions(InContextOptions):
    """``learner.name: incontext_spatial``'s keys (those of ``incontext``); its transformer
    is ``2·D`` wide for tokens of width ``D``."""


def _build_spatial(spec: InContextSpatialOptions, backbone: Backbone
                   ) -> InContextSpatialClassifier:
    grid, token_dim = backbone.tokens(spec.name)
    return InContextSpatialClassifier(backbone.model, grid, token_dim, d_model=2 * token_dim,
                                      depth=backbone.config.depth,
                                      n_heads=backbone.config.heads, dropout=spec.dropout,
                                      label_encoding=spec.label_encoding)


register_learner("incontext_spatial", InContextSpatialClassifier, _build_spatial,
                 options=InContextSpatialOptions)
