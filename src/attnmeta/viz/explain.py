"""One query beside the support set it was classified against, with the attention the
model used drawn on it: the picture behind ``attnmeta explain`` and the web page.

- Attention over the support set (Matching Networks, the in-context learner): each support
  example is framed in a colour, and labelled with the weight, of its attention.
- Patch attention (MAML / Reptile over a vision transformer): a heat map over the query.
- FEAT's prototype-to-prototype attention: a class x class matrix.
- Correspondences (the learners that compare spatial tokens: CrossTransformers, the pair
  matcher): the query beside its predicted class's support images, a line from each query
  location to the support location it attends to most (:mod:`attnmeta.viz.correspondence`).
- A convolutional encoder's class similarity (a built-in encoder such as EfficientNet-Lite0):
  for the likeliest classes, where in the query its features match the class's prototype,
  as a heat map over the photo.
- Every model: the query's probabilities over the fitted classes.

The weights drawn are the arguments, unchanged (the caller passes what the model computed).
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # no display: files and web responses only

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import Tensor  # noqa: E402

from attnmeta.viz.correspondence import (CORRESPONDENCE, class_correspondence,  # noqa: E402
                                         draw_correspondence)

__all__ = ["plot_explanation", "figure_png", "explanation_png"]

MAX_SUPPORT_SHOWN = 40


def _image(ax, image: Tensor) -> None:
    pixels = image.detach().float().cpu()
    ax.imshow(pixels.permute(1, 2, 0).squeeze(-1).clamp(0, 1).numpy(), cmap="gray",
              vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_explanation(query: Tensor | str, support: Tensor | list[str], support_labels: list[str],
                     class_names: list[str], probabilities: Tensor,
                     maps: dict[str, Tensor], title: str,
                     query_tokens: list[str] | None = None,
                     token_grid: tuple[int, int] | None = None) -> Figure:
    """The figure: ``query`` (an image ``[C, H, W]`` or a sentence), ``support`` (images
    ``[S, C, H, W]`` or sentences) with their class names ``support_labels``, the query's
    ``probabilities [N]`` over ``class_names``, and ``maps`` as the learner returned them
    for this one query (``query_support [1, S]``, ``patch_attention [1, g, g]``,
    ``prototypes [H, N, N]``, ``correspondence [1, L, S, L]`` over the ``token_grid``
    ``(H, W)`` of ``L = H·W`` locations; for sentences ``query_tokens [1, L, L]`` over the
    ``query_tokens`` strings). The kind drawn is chosen by the maps' names."""
    if isinstance(query, str):
        return _plot_text(query, support, support_labels, class_names, probabilities, maps,
                          title, query_tokens)
    if CORRESPONDENCE in maps:
        if token_grid is None:
            raise ValueError("a correspondence map needs the token grid (H, W) of its "
                             "locations: expected token_grid (MetaLearner.token_grid())")
        return _plot_correspondence(query, support, support_labels, class_names,
                                    probabilities, maps[CORRESPONDENCE][0], token_grid, title)
    if "class_similarity" in maps:
        return _plot_similarity(query, support, support_labels, class_names, probabilities,
                                maps["class_similarity"], title)
    weights = maps["query_support"][0] if "query_support" in maps else None
    shown = list(range(min(len(support_labels), MAX_SUPPORT_SHOWN)))
    if weights is not None:  # the most attended first, where not all can be shown
        shown = sorted(range(len(support_labels)), key=lambda i: -float(weights[i]))[
            :MAX_SUPPORT_SHOWN]
    extra = 1 if "prototypes" in maps else 0
    columns = 6
    support_rows = -(-len(shown) // columns)
    figure = plt.figure(figsize=(11, 3.2 + 1.6 * support_rows), constrained_layout=True)
    grid = figure.add_gridspec(1 + max(1, support_rows), 2 + extra + columns)
    figure.suptitle(title)

    ax = figure.add_subplot(grid[0, 0:2])
    _image(ax, query)
    if "patch_attention" in maps:
        patches = maps["patch_attention"][0].detach().float().cpu()
        height, width = query.shape[-2:]
        ax.imshow(patches.numpy(), cmap="inferno", alpha=0.5,
                  extent=(-0.5, width - 0.5, height - 0.5, -0.5))
        ax.set_title("query + patch attention", fontsize=9)
    else:
        ax.set_title("query", fontsize=9)

    ax = figure.add_subplot(grid[0, 2 + extra:])
    order = probabilities.detach().float().cpu()
    ax.barh(range(len(class_names)), order.numpy(), color="tab:blue")
    ax.set_yticks(range(len(class_names)), class_names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability")

    if extra:
        ax = figure.add_subplot(grid[0, 2])
        matrix = maps["prototypes"].detach().float().cpu().mean(0)
        ax.imshow(matrix.numpy(), cmap="viridis", vmin=0)
        ax.set_title("prototype attention", fontsize=9)
        ax.set_xticks(range(len(class_names)), class_names, rotation=90, fontsize=6)
        ax.set_yticks(range(len(class_names)), class_names, fontsize=6)

    peak = float(weights.max()) if weights is not None else 1.0
    cmap = plt.get_cmap("viridis")
    for slot, i in enumerate(shown):
        ax = figure.add_subplot(grid[1 + slot // columns, 2 + extra + slot % columns])
        _image(ax, support[i])
        label = support_labels[i]
        if weights is not None:
            weight = float(weights[i])
            for side in ax.spines.values():
                side.set_edgecolor(cmap(weight / peak if peak > 0 else 0.0))
                side.set_linewidth(4)
            label = f"{label}\n{weight:.2f}"
        ax.set_title(label, fontsize=7)
    if weights is None:
        ax = figure.add_subplot(grid[1, 0:2])
        ax.axis("off")
        note = ("the prototypes attend to one\nanother (matrix above); the\nquery is compared "
                "with the\nadapted prototypes" if "prototypes" in maps else
                "this model has no attention\nover the support set:\nit compares the "
                "query\nwith class prototypes")
        ax.text(0.0, 0.5, note, fontsize=8, va="center")
    return figure


def _plot_similarity(query: Tensor, support: Tensor, support_labels: list[str],
                     class_names: list[str], probabilities: Tensor, similarity: Tensor,
                     title: str, classes_shown: int = 3) -> Figure:
    """The query with, for each of its ``classes_shown`` likeliest classes, the map of
    ``similarity [N, h, w]`` over it (bilinear, one colour scale for all, so the maps
    compare) and that class's first support images; the probabilities as bars. Sized to be
    read where it is shown: few panels, text of 10 points and more."""
    import torch.nn.functional as F

    order = probabilities.detach().float().cpu().argsort(descending=True)[:classes_shown]
    height, width = query.shape[-2:]
    maps = F.interpolate(similarity.detach().float().cpu()[None], size=(height, width),
                         mode="bilinear", align_corners=False)[0]
    low, high = float(maps[order].min()), float(maps[order].max())
    thumbs = 3
    figure = plt.figure(figsize=(10, 2.9 * len(order) + 0.6), constrained_layout=True)
    grid = figure.add_gridspec(len(order), 2 + thumbs, width_ratios=[1.4, 1.4] + [1] * thumbs)
    figure.suptitle(title, fontsize=14)
    for row, c in enumerate(order.tolist()):
        ax = figure.add_subplot(grid[row, 0])
        _image(ax, query)
        picture = ax.imshow(maps[c].numpy(), cmap="inferno", alpha=0.55, vmin=low, vmax=high,
                            extent=(-0.5, width - 0.5, height - 0.5, -0.5))
        ax.set_title(f"where it looks like\n{class_names[c]}", fontsize=11)
        ax = figure.add_subplot(grid[row, 1])
        if row:  # the probabilities once, beside the likeliest class
            ax.axis("off")
            ax.text(0.0, 0.5, f"{class_names[c][:24]}\n{float(probabilities[c]):.1%}",
                    fontsize=11, va="center")
        else:
            _probability_bars(ax, probabilities, class_names, order, c)
        examples = [i for i, label in enumerate(support_labels) if label == class_names[c]]
        for slot, i in enumerate(examples[:thumbs]):
            ax = figure.add_subplot(grid[row, 2 + slot])
            _image(ax, support[i])
            ax.set_title(f"{class_names[c][:16]}" if slot == 0 else "", fontsize=10)
    figure.colorbar(picture, ax=figure.axes[0], shrink=0.8, label="cosine to the prototype")
    return figure


def _plot_correspondence(query: Tensor, support: Tensor, support_labels: list[str],
                         class_names: list[str], probabilities: Tensor, weights: Tensor,
                         grid: tuple[int, int], title: str) -> Figure:
    """The query beside its predicted class's support images with the correspondence
    ``weights [L, S, L]`` of that class's images drawn
    (:func:`~attnmeta.viz.correspondence.draw_correspondence`); the probabilities as bars."""
    predicted = class_names[int(probabilities.argmax())]
    shown, part = class_correspondence(weights, support_labels, predicted)
    figure = plt.figure(figsize=(2.6 + 2.2 * len(shown) + 3.2, 3.4), constrained_layout=True)
    grid_spec = figure.add_gridspec(1, 2, width_ratios=[1 + len(shown), 1.4])
    figure.suptitle(title)
    ax = figure.add_subplot(grid_spec[0, 0])
    draw_correspondence(ax, query, support[shown], part, grid,
                        [f"{predicted[:14]} #{i}" for i in shown])
    ax.set_title(f"each query part -> the part of {predicted[:24]} it attends to most "
                 "(heat: attention received)", fontsize=8)
    order = probabilities.detach().float().cpu().argsort(descending=True)[:10]
    _probability_bars(figure.add_subplot(grid_spec[0, 1]), probabilities, class_names, order,
                      int(order[0]))
    return figure


def _probability_bars(ax, probabilities: Tensor, class_names: list[str], order: Tensor,
                      marked: int) -> None:
    ax.barh(range(len(order)), probabilities.detach().float().cpu()[order].numpy(),
            color=["tab:orange" if int(k) == marked else "tab:blue" for k in order])
    ax.set_yticks(range(len(order)), [class_names[int(k)][:18] for k in order], fontsize=10)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.tick_params(axis="x", labelsize=9)
    ax.set_title("probability", fontsize=11)


def figure_png(figure: Figure, dpi: int = 110) -> bytes:
    """The figure as PNG bytes (and closed)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    plt.close(figure)
    return buffer.getvalue()


def explanation_png(explanation) -> bytes:
    """PNG of a :class:`attnmeta.fewshot.Explanation` (read by its fields, so this module
    needs nothing from :mod:`attnmeta.fewshot`): sentences are drawn for a text model."""
    text = explanation.query.dtype.is_floating_point is False
    query = explanation.query_name if text else explanation.query
    support = explanation.support_names if text else explanation.support_x
    probability = float(explanation.probabilities.max())
    # the grid of its locations, read where a correspondence map is drawn
    grid = explanation.token_grid if CORRESPONDENCE in explanation.maps else None
    figure = plot_explanation(query, support, explanation.support_labels,
                              explanation.class_names, explanation.probabilities,
                              explanation.maps, f"{explanation.query_name}: "
                              f"{explanation.label} ({probability:.0%})",
                              explanation.query_tokens, grid)
    return figure_png(figure)


def _plot_text(query: str, support: list[str], support_labels: list[str],
               class_names: list[str], probabilities: Tensor, maps: dict[str, Tensor],
               title: str, query_tokens: list[str] | None = None) -> Figure:
    """:func:`plot_explanation` for sentences: the support sentences listed (by attention
    where the model has it, with the weight), the probabilities as bars."""
    weights = maps["query_support"][0] if "query_support" in maps else None
    order = list(range(len(support)))
    if weights is not None:
        order.sort(key=lambda i: -float(weights[i]))
    order = order[:MAX_SUPPORT_SHOWN]
    lines = [(f"{float(weights[i]):.2f}  " if weights is not None else "")
             + f"[{support_labels[i]}] {support[i][:80]}" for i in order]
    height = 1.6 + 0.22 * (len(lines) + 3)
    tokens = query_tokens if "query_tokens" in maps else None
    if tokens:
        figure, axes = plt.subplots(2, 2, figsize=(12, max(3.0, height) + 2.4),
                                    gridspec_kw={"width_ratios": [3, 1],
                                                 "height_ratios": [1, max(1.0, height / 2.4)]})
        (token_ax, spare), (text_ax, bars_ax) = axes
        spare.axis("off")
        # attention each token receives from the query's tokens (last block, heads averaged)
        received = maps["query_tokens"][0].detach().float().cpu().mean(0)[:len(tokens)]
        token_ax.bar(range(len(tokens)), received.numpy(), color="tab:orange")
        token_ax.set_xticks(range(len(tokens)), tokens, rotation=60, fontsize=7)
        token_ax.set_ylabel("attention", fontsize=8)
        token_ax.set_title("the query's tokens: attention each receives (last block)",
                           fontsize=9)
    else:
        figure, (text_ax, bars_ax) = plt.subplots(1, 2, figsize=(12, max(3.0, height)),
                                                  gridspec_kw={"width_ratios": [3, 1]})
    figure.suptitle(title)
    text_ax.axis("off")
    heading = "support, by attention" if weights is not None else "support"
    text_ax.text(0.0, 1.0, f"query: {query}\n\n{heading}:\n" + "\n".join(lines), va="top",
                 fontsize=8, family="monospace", transform=text_ax.transAxes)
    bars_ax.barh(range(len(class_names)), probabilities.detach().float().cpu().numpy())
    bars_ax.set_yticks(range(len(class_names)), class_names, fontsize=8)
    bars_ax.invert_yaxis()
    bars_ax.set_xlim(0, 1)
    bars_ax.set_xlabel("probability")
    figure.tight_layout()
    return figure
