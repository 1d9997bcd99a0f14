"""attnmeta.viz.explain: one query beside its support set, drawing exactly the weights and
probabilities it is given (no model here; test_text_classifier.py explains a trained one)."""

from __future__ import annotations

import io
from types import SimpleNamespace

import matplotlib.pyplot as plt
import pytest
import torch
from PIL import Image

from attnmeta.viz.explain import (MAX_SUPPORT_SHOWN, explanation_png, figure_png,
                                  plot_explanation)

CLASSES = ["cat", "dog", "fox"]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def support(count: int, side: int = 6) -> torch.Tensor:
    return torch.rand(count, 1, side, side, generator=torch.Generator().manual_seed(count))


def titles(figure) -> list[str]:
    return [ax.get_title() for ax in figure.axes]


def bar_widths(figure) -> list[float]:
    axes = [ax for ax in figure.axes if ax.patches and ax.get_xlim() == (0.0, 1.0)]
    return [round(patch.get_width(), 6) for patch in axes[0].patches]


def test_support_is_shown_most_attended_first_with_its_weight():
    weights = torch.tensor([[0.1, 0.5, 0.0, 0.4]])
    probabilities = torch.tensor([0.25, 0.5, 0.25])
    figure = plot_explanation(support(1)[0], support(4), ["cat", "dog", "fox", "dog"], CLASSES,
                              probabilities, {"query_support": weights}, "q: dog (50%)")
    shown = [t for t in titles(figure) if "\n" in t]
    assert shown == ["dog\n0.50", "dog\n0.40", "cat\n0.10", "fox\n0.00"]
    assert bar_widths(figure) == [0.25, 0.5, 0.25]  # the probabilities, unchanged
    assert figure._suptitle.get_text() == "q: dog (50%)" and "query" in titles(figure)
    frames = [ax for ax in figure.axes if ax.get_title() in shown]
    peak = plt.get_cmap("viridis")(1.0)  # the most attended support example's frame
    assert tuple(frames[0].spines["top"].get_edgecolor()) == pytest.approx(peak)


def test_only_the_most_attended_support_examples_fit():
    count = MAX_SUPPORT_SHOWN + 5
    weights = torch.arange(count, dtype=torch.float32)[None] / count
    labels = [f"c{i}" for i in range(count)]
    figure = plot_explanation(support(1)[0], support(count), labels, labels,
                              torch.full((count,), 1 / count), {"query_support": weights}, "t")
    shown = [t.split("\n")[0] for t in titles(figure) if "\n" in t]
    assert shown == [f"c{i}" for i in range(count - 1, count - 1 - MAX_SUPPORT_SHOWN, -1)]


def test_patch_and_prototype_attention_are_drawn_as_given():
    query = support(1, side=8)[0]
    patches = torch.rand(1, 2, 2, generator=torch.Generator().manual_seed(5))
    prototypes = torch.rand(2, 3, 3, generator=torch.Generator().manual_seed(6))
    figure = plot_explanation(query, support(3), CLASSES, CLASSES, torch.tensor([0.2, 0.3, 0.5]),
                              {"patch_attention": patches, "prototypes": prototypes}, "t")
    images = {ax.get_title(): [torch.as_tensor(im.get_array().data) for im in ax.get_images()]
              for ax in figure.axes if ax.get_images()}
    assert torch.equal(images["query + patch attention"][1], patches[0])
    assert torch.allclose(images["prototype attention"][0], prototypes.mean(0))
    # no attention over the support set: the support is unframed and a note says why
    assert [t for t in titles(figure) if t in CLASSES] == CLASSES
    notes = [text.get_text() for ax in figure.axes for text in ax.texts]
    assert any("prototypes attend to one" in note for note in notes)


def test_class_similarity_shows_the_three_likeliest_classes_on_one_scale():
    classes = ["a", "b", "c", "d"]
    probabilities = torch.tensor([0.1, 0.4, 0.2, 0.3])
    similarity = torch.arange(4.0)[:, None, None].expand(4, 2, 2)  # class c: constant c
    figure = plot_explanation(support(1, side=8)[0], support(4), classes, classes, probabilities,
                              {"class_similarity": similarity}, "t")
    looks = [t for t in titles(figure) if t.startswith("where it looks like")]
    assert looks == [f"where it looks like\n{c}" for c in ("b", "d", "c")]
    overlays = [im for ax in figure.axes for im in ax.get_images()
                if im.get_array().shape == (8, 8) and im.get_cmap().name == "inferno"]
    assert [float(im.get_array().mean()) for im in overlays] == [1.0, 3.0, 2.0]
    assert all(im.get_clim() == (1.0, 3.0) for im in overlays)  # over the classes shown


def test_a_sentence_query_lists_the_support_by_attention():
    figure = plot_explanation("book a table", ["table for two", "rain today"],
                              ["restaurant", "weather"], ["restaurant", "weather"],
                              torch.tensor([0.9, 0.1]),
                              {"query_support": torch.tensor([[0.7, 0.3]])}, "t")
    (text,) = [t.get_text() for ax in figure.axes for t in ax.texts]
    assert text == ("query: book a table\n\nsupport, by attention:\n"
                    "0.70  [restaurant] table for two\n0.30  [weather] rain today")


def test_figure_png_is_the_figure_at_its_size_and_closes_it():
    figure = plt.figure(figsize=(2, 1.5))
    number = figure.number
    data = figure_png(figure, dpi=50)
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG" and image.size == (100, 75)
    assert not plt.fignum_exists(number)


def test_explanation_png_reads_an_explanation_by_its_fields():
    explanation = SimpleNamespace(
        query=torch.tensor([5, 6, 0]), query_name="book a table", label="restaurant",
        probabilities=torch.tensor([0.75, 0.25]), class_names=["restaurant", "weather"],
        maps={}, support_x=torch.tensor([[1, 0], [2, 0]]),
        support_names=["table for two", "rain today"], support_labels=["restaurant", "weather"],
        query_tokens=None)
    data = explanation_png(explanation)  # token ids: drawn as sentences
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG" and image.size == (12 * 110, 3 * 110)
    assert not plt.get_fignums()
