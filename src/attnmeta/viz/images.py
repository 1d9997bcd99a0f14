"""Attention maps: where a meta-learner looks when it classifies a query.

- Matching Networks: each query's attention over the support set (the weights that
  produce its prediction, ``P(y | x̂, S) = Σ_i a(x̂, x_i) y_i``).
- FEAT: each prototype's attention over the other prototypes in the set-to-set transformer.
- The in-context classifier: each query token's attention over the support tokens in the
  last transformer block (averaged over heads).
- MAML / Reptile over a vision transformer: the ``[CLS]`` token's attention over the image
  patches in the last block, at the parameters adapted to the episode's support set,
  drawn over each query image.
- The learners that compare spatial tokens (CrossTransformers, the pair matcher): for each
  shown query, its predicted class's support images beside it, a line from each query
  location to the support location it attends to most
  (:mod:`attnmeta.viz.correspondence`).

The functions take the weights the model computed in its forward pass and draw exactly
those (the returned figures hold them in their images), with the episode's images on the
axes so a reader can see which support examples a query was matched to.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from torch import Tensor

from attnmeta.learners import MetaLearner, class_count
from attnmeta.tasks.episode import Episode
from attnmeta.viz.correspondence import (CORRESPONDENCE, Matches, class_correspondence,
                                         draw_correspondence)

__all__ = ["episode_attention", "plot_query_support_attention", "plot_prototype_attention",
           "plot_patch_attention", "plot_episode_correspondence", "shown_queries",
           "write_attention_maps"]


def episode_attention(learner: MetaLearner, episode: Episode, steps: int | None = None
                      ) -> dict[str, Tensor]:
    """The attention weights ``learner`` uses on one episode (no task dimension):
    :meth:`MetaLearner.attention_maps` in eval mode. ``steps``: inner steps of a gradient
    learner (default: its ``eval_steps``).

    Returns ``{"query_support": [Q, S]}`` for Matching Networks and the in-context
    classifier, ``{"prototypes": [H, N, N]}`` for FEAT and ``{"patch_attention": [Q, g, g]}``
    (``g × g`` patches) for MAML / Reptile over a vision transformer; raises ``ValueError``
    for a learner without attention.
    """
    learner.eval()
    return learner.attention_maps(episode.support_x, episode.support_y, episode.query_x, steps)


def _thumbnail(ax, image: Tensor) -> None:
    ax.imshow(image.detach().float().cpu().permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray")
    ax.set_xticks([])
    ax.set_yticks([])


def shown_queries(query_y: Tensor, max_queries: int) -> list[int]:
    """Up to ``max_queries`` query indices, spread evenly over the classes."""
    n_way = class_count(query_y)
    per_class = max(1, max_queries // n_way)
    return [int(i) for c in range(n_way) for i in (query_y == c).nonzero()[:per_class, 0]]


def plot_query_support_attention(weights: Tensor, episode: Episode, max_queries: int = 10,
                                 title: str = "Matching Networks") -> Figure:
    """Heat map of ``weights [Q, S]`` (support images as columns; rows: queries spread over
    the classes, see :func:`shown_queries`)."""
    rows = shown_queries(episode.query_y, max_queries)
    weights = weights[rows]
    queries, support = weights.shape
    fig = plt.figure(figsize=(1.8 + 0.55 * support, 1.2 + 0.55 * queries))
    # columns: query thumbnails | heat map | room for its right-hand labels | colour bar
    grid = fig.add_gridspec(queries + 1, support + 3,
                            width_ratios=[1] * (support + 1) + [0.9, 0.3],
                            height_ratios=[1] * (queries + 1), wspace=0.05, hspace=0.05)
    heat = fig.add_subplot(grid[1:, 1:support + 1])
    image = heat.imshow(weights.detach().cpu().numpy(), cmap="viridis", vmin=0, aspect="auto")
    heat.set_xticks(range(support), [str(int(y)) for y in episode.support_y], fontsize=7)
    heat.yaxis.tick_right()  # the query thumbnails take the left side
    heat.set_yticks(range(queries), [str(int(episode.query_y[r])) for r in rows], fontsize=7)
    heat.set_xlabel("support example (label)")
    heat.set_ylabel("query (true label)")
    heat.yaxis.set_label_position("right")
    for column in range(support):
        _thumbnail(fig.add_subplot(grid[0, column + 1]), episode.support_x[column])
    for position, row in enumerate(rows):
        _thumbnail(fig.add_subplot(grid[position + 1, 0]), episode.query_x[row])
    fig.colorbar(image, cax=fig.add_subplot(grid[1:, support + 2]), label="attention")
    fig.suptitle(f"{title}: query attention over the support set", fontsize=9)
    return fig


def plot_prototype_attention(weights: Tensor) -> Figure:
    """One heat map per head of ``weights [H, N, N]`` (row: attending class)."""
    heads, n_way = weights.shape[0], weights.shape[-1]
    fig, axes = plt.subplots(1, heads, figsize=(1.5 + 3.2 * heads, 3.4), squeeze=False)
    for head, ax in enumerate(axes[0]):
        image = ax.imshow(weights[head].detach().cpu().numpy(), cmap="viridis", vmin=0)
        ax.set_xticks(range(n_way), [f"class {c}" for c in range(n_way)], rotation=90, fontsize=7)
        ax.set_yticks(range(n_way), [f"class {c}" for c in range(n_way)], fontsize=7)
        ax.set_title(f"head {head}", fontsize=8)
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.suptitle("FEAT: each prototype's attention over the task's prototypes", fontsize=8)
    fig.tight_layout()
    return fig


def plot_patch_attention(weights: Tensor, episode: Episode, max_queries: int = 10) -> Figure:
    """Each shown query image with its ``[CLS]``-to-patch attention ``weights [Q, g, g]``
    overlaid (nearest-neighbour upsampled, so each patch is one flat block)."""
    rows = shown_queries(episode.query_y, max_queries)
    fig, axes = plt.subplots(2, len(rows), figsize=(1.3 * len(rows) + 0.6, 3.0), squeeze=False)
    for column, row in enumerate(rows):
        image = episode.query_x[row]
        _thumbnail(axes[0, column], image)
        axes[0, column].set_title(f"label {int(episode.query_y[row])}", fontsize=7)
        _thumbnail(axes[1, column], image)
        side = image.shape[-1]
        axes[1, column].imshow(weights[row].detach().cpu().numpy(), cmap="magma", alpha=0.6,
                               extent=(-0.5, side - 0.5, side - 0.5, -0.5),
                               interpolation="nearest")
    fig.suptitle("Vision transformer ([CLS] attention over patches, last block, adapted)",
                 fontsize=8)
    fig.tight_layout()
    return fig


def plot_episode_correspondence(weights: Tensor, episode: Episode, grid: tuple[int, int],
                                predicted: Tensor, max_queries: int = 4,
                                title: str = "correspondence") -> tuple[Figure, list[Matches]]:
    """One row per shown query (:func:`shown_queries`): the query beside the support images
    of its ``predicted [Q]`` class with its ``weights [Q, L, S, L]`` over them drawn
    (:func:`~attnmeta.viz.correspondence.draw_correspondence`; ``L = H·W`` of ``grid``);
    returns the figure and each row's matches."""
    rows = shown_queries(episode.query_y, max_queries)
    labels = [int(y) for y in episode.support_y]
    drawn = [class_correspondence(weights[row], labels, int(predicted[row])) for row in rows]
    images = max(len(shown) for shown, _ in drawn)
    fig, axes = plt.subplots(len(rows), 1, figsize=(1.6 + 1.7 * (1 + images),
                                                    0.4 + 1.9 * len(rows)), squeeze=False)
    matches = []
    for ax, row, (shown, part) in zip(axes[:, 0], rows, drawn):
        matches.append(draw_correspondence(ax, episode.query_x[row], episode.support_x[shown],
                                           part, grid, [f"class {labels[i]}" for i in shown]))
        ax.set_ylabel(f"label {int(episode.query_y[row])}\npredicted {int(predicted[row])}",
                      fontsize=7)
    fig.suptitle(f"{title}: each query part -> the support part it attends to most "
                 "(heat: attention received)", fontsize=8)
    fig.tight_layout()
    return fig, matches


def write_attention_maps(learner: MetaLearner, episode: Episode, out_dir: Path,
                         steps: int | None = None) -> list[Path]:
    """Draw every attention map of ``learner`` on ``episode`` into ``out_dir`` as PNGs
    (``steps``: see :func:`episode_attention`), each by its kind, the map's name: a
    ``"correspondence"`` ``[Q, L, S, L]`` over the learner's :meth:`~MetaLearner.token_grid`
    with the support images of each query's predicted class."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, weights in episode_attention(learner, episode, steps).items():
        if name == "query_support":
            fig = plot_query_support_attention(weights, episode, title=learner.display_name)
        elif name == "patch_attention":
            fig = plot_patch_attention(weights, episode)
        elif name == CORRESPONDENCE:
            predicted = learner.predict(episode.support_x, episode.support_y,
                                        episode.query_x).argmax(-1)
            fig, _ = plot_episode_correspondence(weights, episode, learner.token_grid(),
                                                 predicted, title=learner.display_name)
        elif name == "prototypes":
            fig = plot_prototype_attention(weights)
        else:
            raise ValueError(f"attention map {name!r} of {type(learner).__name__}: expected "
                             "one of query_support, patch_attention, prototypes, "
                             f"{CORRESPONDENCE} (a kind attnmeta.viz.images draws)")
        path = out_dir / f"attention_{name}.png"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written
