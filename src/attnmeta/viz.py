"""Attention maps: where a meta-learner looks when it classifies a query.

- Matching Networks: each query's attention over the support set (the weights that
  produce its prediction, ``P(y | x̂, S) = Σ_i a(x̂, x_i) y_i``).
- FEAT: each prototype's attention over the other prototypes in the set-to-set transformer.

The functions take the weights the model computed in its forward pass and draw exactly
those (the returned figures hold them in their images), with the episode's images on the
axes so a reader can see which support examples a query was matched to.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from torch import Tensor

from attnmeta.learners import FEAT, MatchingNet, MetaLearner
from attnmeta.learners.base import embed_episode
from attnmeta.tasks.episode import Episode

__all__ = ["episode_attention", "plot_query_support_attention", "plot_prototype_attention",
           "shown_queries", "write_attention_maps"]


def episode_attention(learner: MetaLearner, episode: Episode) -> dict[str, Tensor]:
    """The attention weights ``learner`` uses on one episode (no task dimension).

    Returns ``{"query_support": [Q, S]}`` for Matching Networks and
    ``{"prototypes": [H, N, N]}`` for FEAT.
    """
    support_x, support_y, query_x = (episode.support_x[None], episode.support_y[None],
                                     episode.query_x[None])
    learner.eval()
    with torch.no_grad():
        if isinstance(learner, MatchingNet):
            return {"query_support": learner.attention(support_x, query_x)[0]}
        if isinstance(learner, FEAT):
            support_z, _ = embed_episode(learner.encoder, support_x, query_x)
            n_way = int(support_y.max()) + 1
            _, weights = learner.adapted_prototypes(support_z, support_y, n_way, need_weights=True)
            return {"prototypes": weights[0]}
    raise ValueError(f"{type(learner).__name__} has no attention to draw: expected "
                     "MatchingNet or FEAT")


def _thumbnail(ax, image: Tensor) -> None:
    ax.imshow(image.detach().float().cpu().permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray")
    ax.set_xticks([])
    ax.set_yticks([])


def shown_queries(query_y: Tensor, max_queries: int) -> list[int]:
    """Up to ``max_queries`` query indices, spread evenly over the classes."""
    n_way = int(query_y.max()) + 1
    per_class = max(1, max_queries // n_way)
    return [int(i) for c in range(n_way) for i in (query_y == c).nonzero()[:per_class, 0]]


def plot_query_support_attention(weights: Tensor, episode: Episode, max_queries: int = 10
                                 ) -> Figure:
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
    fig.suptitle("Matching Networks: query attention over the support set", fontsize=9)
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


def write_attention_maps(learner: MetaLearner, episode: Episode, out_dir: Path) -> list[Path]:
    """Draw every attention map of ``learner`` on ``episode`` into ``out_dir`` as PNGs."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, weights in episode_attention(learner, episode).items():
        fig = (plot_query_support_attention(weights, episode) if name == "query_support"
               else plot_prototype_attention(weights))
        path = out_dir / f"attention_{name}.png"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written
