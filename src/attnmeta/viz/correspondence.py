"""Which part of the query attended to which part of which support image: the drawing of a
``"correspondence"`` map (:meth:`attnmeta.learners.MetaLearner.attention_maps`), for the
learners that compare spatial tokens (CrossTransformers, Doersch, Gupta & Zisserman,
NeurIPS 2020; the pair matcher of Polis & Ilin, ESANN 2021; the in-context learner over
spatial tokens).

A correspondence map of one query is ``weights [L, K, L]``: for each of the query's
``L = H·W`` locations (row-major, as :func:`attnmeta.models.spatial.grid_positions`), its
attention over each location of ``K`` support images (the predicted class's). The drawing
puts the query beside those images and, from the centre of each query cell, draws one line
to the support cell it attends to most (:func:`correspondence_matches`: the argmax over all
``K·L`` support locations), in that query location's own colour, its width and opacity
growing with the weight; over each support image a heat map of the attention mass each of
its locations receives (summed over the query's locations). Pure functions: the images,
the weights and the grid in, no model; the weights drawn are the arguments, unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # no display: files and web responses only

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import Tensor  # noqa: E402

__all__ = ["CORRESPONDENCE", "Matches", "correspondence_matches", "cell_centres",
           "class_correspondence", "draw_correspondence", "plot_correspondence",
           "MAX_IMAGES_SHOWN"]

# the name key of the map kind drawn here (what the drawing code dispatches on)
CORRESPONDENCE = "correspondence"
MAX_IMAGES_SHOWN = 6   # support images of the predicted class drawn beside the query
GAP = 0.25             # between two images, as a fraction of an image's width


@dataclass(frozen=True)
class Matches:
    """For each query location ``p`` of a correspondence ``weights [L, K, L]``: the support
    ``image [L]`` (0 … K-1) and ``location [L]`` (0 … L-1, row-major) it attends to most and
    that ``weight [L]``; ``mass [K, L]``: the attention each support location receives,
    summed over the query's locations (the heat maps)."""

    image: Tensor
    location: Tensor
    weight: Tensor
    mass: Tensor


def correspondence_matches(weights: Tensor) -> Matches:
    """:class:`Matches` of ``weights [L, K, L']`` (query locations × support images × their
    locations): the argmax over all ``K·L'`` support locations of each query location (the
    first on ties, as :func:`torch.max`)."""
    if weights.dim() != 3:
        raise ValueError(f"correspondence weights of shape {tuple(weights.shape)}: expected "
                         "[L, K, L] (query locations × support images × their locations)")
    weights = weights.detach().float().cpu()
    length = weights.shape[-1]
    weight, index = weights.flatten(1).max(-1)
    return Matches(index // length, index % length, weight, weights.sum(0))


def cell_centres(grid: tuple[int, int], height: int, width: int) -> Tensor:
    """``[H·W, 2]``: the ``(x, y)`` pixel coordinates (as :meth:`Axes.imshow` places pixel
    ``(0, 0)`` at ``(0, 0)``) of the centre of each cell of a ``grid = (H, W)`` token map
    laid over a ``height × width`` image, row-major (the order of the tokens)."""
    rows, cols = grid
    y = (torch.arange(rows, dtype=torch.float32) + 0.5) * height / rows - 0.5
    x = (torch.arange(cols, dtype=torch.float32) + 0.5) * width / cols - 0.5
    ys, xs = torch.meshgrid(y, x, indexing="ij")
    return torch.stack([xs, ys], dim=-1).reshape(-1, 2)


def class_correspondence(weights: Tensor, support_labels: list, label,
                         limit: int = MAX_IMAGES_SHOWN) -> tuple[list[int], Tensor]:
    """The support images of class ``label`` to draw and their part of one query's
    ``weights [L, S, L]``: ``(indices, [L, K, L])``, at most ``limit`` images, those that
    receive the most attention first where the class has more (then the lines go to the
    most attended location among the images shown)."""
    members = [i for i, name in enumerate(support_labels) if name == label]
    if not members:
        raise ValueError(f"no support image of class {label!r} to draw the correspondence with")
    received = weights.detach().float().cpu()[:, members].sum(dim=(0, 2))
    chosen = sorted(range(len(members)), key=lambda i: -float(received[i]))[:limit]
    indices = [members[i] for i in sorted(chosen)]
    return indices, weights[:, indices]


def _grey(image: Tensor):
    pixels = image.detach().float().cpu().clamp(0, 1)
    return pixels.permute(1, 2, 0).squeeze(-1).numpy()


def draw_correspondence(ax: Axes, query: Tensor, support: Tensor, weights: Tensor,
                        grid: tuple[int, int], titles: list[str] | None = None) -> Matches:
    """Draw on ``ax`` the ``query`` image ``[C, h, w]`` beside the ``support`` images
    ``[K, C, h, w]`` with, for each query location of ``weights [L, K, L]`` (``L = H·W``
    of ``grid = (H, W)``), a line from its cell centre to the centre of the support cell it
    attends to most (line ``p`` of the axes' lines, in the colour of query location ``p``,
    width and opacity by the weight over the largest one), a dot at each end, and over each
    support image its attention mass per location (nearest-neighbour blocks). Returns the
    :class:`Matches` drawn."""
    length = grid[0] * grid[1]
    if weights.shape != (length, len(support), length):
        raise ValueError(f"correspondence weights of shape {tuple(weights.shape)}: expected "
                         f"[{length}, {len(support)}, {length}] for a {grid[0]}×{grid[1]} "
                         f"grid and {len(support)} support images")
    matches = correspondence_matches(weights)
    height, width = query.shape[-2:]
    step = width * (1 + GAP)
    offsets = [step * (k + 1) for k in range(len(support))]   # x of each support image

    def place(image: Tensor, x0: float) -> None:
        ax.imshow(_grey(image), cmap="gray", vmin=0, vmax=1,
                  extent=(x0 - 0.5, x0 + width - 0.5, height - 0.5, -0.5))

    place(query, 0.0)
    peak_mass = float(matches.mass.max()) or 1.0
    for k, x0 in enumerate(offsets):
        place(support[k], x0)
        ax.imshow(matches.mass[k].reshape(grid).numpy(), cmap="inferno", alpha=0.45,
                  vmin=0, vmax=peak_mass, interpolation="nearest",
                  extent=(x0 - 0.5, x0 + width - 0.5, height - 0.5, -0.5))
    centres = cell_centres(grid, height, width)
    peak = float(matches.weight.max()) or 1.0
    colours = plt.get_cmap("hsv")
    for p in range(length):
        strength = float(matches.weight[p]) / peak
        start = centres[p]
        end = centres[int(matches.location[p])] + torch.tensor(
            [offsets[int(matches.image[p])], 0.0])
        colour = colours(p / length)
        ax.plot([float(start[0]), float(end[0])], [float(start[1]), float(end[1])],
                color=colour, linewidth=0.4 + 2.6 * strength, alpha=0.25 + 0.75 * strength,
                solid_capstyle="round")
    for p in range(length):  # the ends above the lines
        start = centres[p]
        end = centres[int(matches.location[p])] + torch.tensor(
            [offsets[int(matches.image[p])], 0.0])
        ax.scatter([float(start[0]), float(end[0])], [float(start[1]), float(end[1])],
                   s=12, color=colours(p / length), edgecolors="white", linewidths=0.4,
                   zorder=3)
    ax.set_xlim(-0.5, offsets[-1] + width - 0.5 if offsets else width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    ax.set_xticks([width / 2 - 0.5] + [x0 + width / 2 - 0.5 for x0 in offsets],
                  ["query"] + (titles or [f"support {k}" for k in range(len(support))]),
                  fontsize=8)
    ax.set_yticks([])
    ax.set_aspect("equal")
    return matches


def plot_correspondence(query: Tensor, support: Tensor, weights: Tensor,
                        grid: tuple[int, int], title: str,
                        titles: list[str] | None = None) -> tuple[Figure, Matches]:
    """A figure of one :func:`draw_correspondence` (same arguments) and its matches."""
    figure, ax = plt.subplots(figsize=(2.2 + 2.0 * len(support), 2.8), constrained_layout=True)
    matches = draw_correspondence(ax, query, support, weights, grid, titles)
    ax.set_title(title, fontsize=9)
    return figure, matches
