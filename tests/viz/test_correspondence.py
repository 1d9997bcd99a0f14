"""attnmeta.viz.correspondence: each query location is drawn to the argmax of the weights
passed (the lines' ends are the cell centres of the matches); ``attnmeta viz`` and
``explain`` dispatch on the map's name; and, end to end over a trained CrossTransformer,
the correspondence ``explain`` returns is the attention of the very forward pass that gave
the query's scores."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from attnmeta.tasks.episode import Episode
from attnmeta.viz.correspondence import (cell_centres, class_correspondence,
                                         correspondence_matches, draw_correspondence,
                                         plot_correspondence)
from attnmeta.viz.explain import plot_explanation
from attnmeta.viz.images import plot_episode_correspondence
from support import make_image_folder, tiny_config

GRID = (2, 3)
L = GRID[0] * GRID[1]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def weights_of(*shape: int, seed: int = 0) -> torch.Tensor:
    """Rows of ``[..., K, L]`` summing to 1 over the support locations of each image."""
    gen = torch.Generator().manual_seed(seed)
    return torch.softmax(3 * torch.randn(*shape, generator=gen), dim=-1)


def test_cell_centres_are_row_major_centres_in_pixels():
    centres = cell_centres((2, 3), 8, 12)       # cells of 4 × 4 pixels
    expected = torch.tensor([[1.5, 1.5], [5.5, 1.5], [9.5, 1.5],
                             [1.5, 5.5], [5.5, 5.5], [9.5, 5.5]])
    assert torch.equal(centres, expected)


def test_each_query_location_is_drawn_to_the_argmax_of_the_weights():
    weights = weights_of(L, 2, L)                                  # [L, K, L]
    gen = torch.Generator().manual_seed(1)
    query, support = torch.rand(1, 8, 12, generator=gen), torch.rand(2, 1, 8, 12, generator=gen)
    figure, matches = plot_correspondence(query, support, weights, GRID, "t")
    flat = weights.flatten(1).argmax(-1)                           # over all K·L locations
    assert torch.equal(matches.image, flat // L) and torch.equal(matches.location, flat % L)
    assert torch.equal(matches.weight, weights.flatten(1).max(-1).values)
    assert torch.equal(matches.mass, weights.sum(0))
    ax = figure.axes[0]
    centres = cell_centres(GRID, 8, 12)
    step = 12 * 1.25                                               # an image and its gap
    assert len(ax.lines) == L
    for p, line in enumerate(ax.lines):                            # line p: query location p
        xs, ys = line.get_data()
        k, m = int(matches.image[p]), int(matches.location[p])
        assert (xs[0], ys[0]) == tuple(centres[p].tolist())
        assert xs[1] == pytest.approx(float(centres[m, 0]) + step * (k + 1))
        assert ys[1] == pytest.approx(float(centres[m, 1]))
    widths = torch.tensor([line.get_linewidth() for line in ax.lines])
    assert int(widths.argmax()) == int(matches.weight.argmax())   # the strongest is widest
    # each support image carries its own heat map of the mass received, as passed
    heat = [torch.as_tensor(im.get_array().data) for im in ax.get_images()
            if tuple(im.get_array().shape) == GRID]
    assert len(heat) == 2
    assert all(torch.equal(h, matches.mass[k].reshape(GRID)) for k, h in enumerate(heat))


def test_a_tie_goes_to_the_first_location_and_bad_shapes_are_refused():
    weights = torch.zeros(L, 1, L)
    weights[:, 0, 2] = weights[:, 0, 4] = 0.5
    assert correspondence_matches(weights).location.tolist() == [2] * L
    _, ax = plt.subplots()
    with pytest.raises(ValueError, match=r"expected \[6, 2, 6\]"):
        draw_correspondence(ax, torch.rand(1, 8, 12), torch.rand(2, 1, 8, 12),
                            torch.rand(L, 3, L), GRID)
    with pytest.raises(ValueError, match=r"expected \[L, K, L\]"):
        correspondence_matches(torch.rand(2, L, 3, L))


def test_the_predicted_class_images_are_chosen_by_label():
    weights = weights_of(L, 5, L, seed=2)
    shown, part = class_correspondence(weights, ["a", "b", "a", "c", "a"], "a", limit=2)
    received = weights[:, [0, 2, 4]].sum(dim=(0, 2))
    keep = sorted([0, 2, 4][i] for i in received.argsort(descending=True)[:2].tolist())
    assert shown == keep and torch.equal(part, weights[:, keep])
    with pytest.raises(ValueError, match="class 'z'"):
        class_correspondence(weights, ["a"] * 5, "z")


def test_an_episode_draws_each_shown_query_against_its_predicted_class():
    gen = torch.Generator().manual_seed(3)
    episode = Episode(torch.rand(6, 1, 8, 12, generator=gen), torch.tensor([0, 1, 2, 0, 1, 2]),
                      torch.rand(3, 1, 8, 12, generator=gen), torch.tensor([0, 1, 2]))
    weights = weights_of(3, L, 6, L, seed=4)                       # [Q, L, S, L]
    predicted = torch.tensor([1, 1, 0])
    figure, matches = plot_episode_correspondence(weights, episode, GRID, predicted)
    assert len(matches) == 3 and len(figure.axes) == 3
    for q, found in enumerate(matches):
        members = [j for j in range(6) if int(episode.support_y[j]) == int(predicted[q])]
        flat = weights[q][:, members].flatten(1).argmax(-1)
        assert torch.equal(found.image, flat // L) and torch.equal(found.location, flat % L)


def test_explain_figure_dispatches_on_the_name_and_needs_the_grid():
    weights = weights_of(1, L, 4, L, seed=5)
    support = torch.rand(4, 1, 8, 12)
    args = (torch.rand(1, 8, 12), support, ["x", "y", "x", "y"], ["x", "y"],
            torch.tensor([0.3, 0.7]), {"correspondence": weights}, "title")
    figure = plot_explanation(*args, token_grid=GRID)
    ax = figure.axes[0]
    assert len(ax.lines) == L                                      # class "y": images 1 and 3
    assert [t.get_text() for t in ax.get_xticklabels()] == ["query", "y #1", "y #3"]
    with pytest.raises(ValueError, match="token grid"):
        plot_explanation(*args)


# -- end to end: a trained CrossTransformer ------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    from attnmeta.runs.episodic import train_run

    root = tmp_path_factory.mktemp("correspondence")
    images = make_image_folder(root / "images")
    config = tiny_config(images, "cross_transformer", steps=2, heads=2, key_dim=8,
                         value_dim=8)
    config.model.norm = "running"
    config.train.eval_every = 0
    train_run(config, root / "run", progress=False, will_evaluate=False)
    return root / "run", images


def test_explain_returns_the_weights_of_the_forward_pass_that_scored_the_query(
        trained, monkeypatch):
    """Scores and attention computed in one forward pass (the attention recorded inside
    the prediction itself): explain's correspondence is that attention, and the picture's
    lines are its argmax."""
    import attnmeta.learners.cross_transformer as module
    from attnmeta.fewshot import FewShotClassifier
    from attnmeta.viz.explain import explanation_png

    run, images = trained
    model = FewShotClassifier.from_run(run)
    support = sorted((images / "test").glob("class_0[0-2]/[0-1].png"))
    model.fit([(path, path.parent.name) for path in support])
    query = sorted((images / "val" / "class_01").glob("*.png"))[0]

    recorded = []
    original = module.scaled_dot_product_attention

    def recording(q, k, v, mask=None, return_weights=False, **kwargs):
        out, weights = original(q, k, v, mask=mask, return_weights=True, **kwargs)
        recorded.append(weights)
        return (out, weights) if return_weights else out

    monkeypatch.setattr(module, "scaled_dot_product_attention", recording)
    scores, _ = model.logits([query])                   # scores and weights: one call
    (used,) = recorded                                  # [1, N, H, Q·L, K·L], Q = 1
    monkeypatch.setattr(module, "scaled_dot_product_attention", original)
    explanation = model.explain(query)

    torch.testing.assert_close(explanation.probabilities, torch.softmax(scores[0], -1),
                               rtol=1e-6, atol=1e-7)
    grid = model.learner.token_grid()
    length = grid[0] * grid[1]
    labels = [model.class_names.index(name) for name in explanation.support_labels]
    expected = torch.zeros(length, len(labels), length)
    for j, n in enumerate(labels):                      # image j: its class's block, rank r
        r = labels[:j].count(n)
        expected[:, j] = used[0, n, :, :, r * length:(r + 1) * length].mean(0)
    assert explanation.token_grid == grid == (2, 2)
    assert torch.equal(explanation.maps["correspondence"][0], expected)

    predicted = [i for i, name in enumerate(explanation.support_labels)
                 if name == explanation.label]
    figure = plot_explanation(explanation.query, explanation.support_x,
                              explanation.support_labels, explanation.class_names,
                              explanation.probabilities, explanation.maps, "t",
                              token_grid=grid)
    ax = figure.axes[0]
    flat = expected[:, predicted].flatten(1).argmax(-1)
    centres = cell_centres(grid, *explanation.query.shape[-2:])
    assert [tuple(line.get_xydata()[0]) for line in ax.lines] == [
        tuple(c) for c in centres.tolist()]
    step = explanation.query.shape[-1] * 1.25
    ends = torch.tensor(np.array([line.get_xydata()[1] for line in ax.lines]),
                        dtype=torch.float32)
    targets = centres[flat % length] + torch.stack(
        [step * (flat // length + 1), torch.zeros(length)], dim=-1)
    torch.testing.assert_close(ends, targets)
    assert explanation_png(explanation)[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_cli_explains_and_viz_draws_the_correspondence(trained, tmp_path):
    from attnmeta.cli import main

    run, images = trained
    runner = CliRunner()
    outcome = runner.invoke(main, ["adapt", str(run), "--support", str(images / "test"),
                                   "--out", str(tmp_path / "model"), "--no-progress"])
    assert outcome.exit_code == 0, outcome.output
    query = sorted((images / "val" / "class_02").glob("*.png"))[0]
    outcome = runner.invoke(main, ["explain", str(tmp_path / "model"), str(query),
                                   "--out", str(tmp_path / "x.png")])
    assert outcome.exit_code == 0, outcome.output
    assert "drew correspondence" in outcome.output
    with Image.open(tmp_path / "x.png") as picture:
        assert picture.format == "PNG"
    outcome = runner.invoke(main, ["viz", str(run), "--out", str(tmp_path / "maps")])
    assert outcome.exit_code == 0, outcome.output
    assert (tmp_path / "maps" / "attention_correspondence.png").is_file()
