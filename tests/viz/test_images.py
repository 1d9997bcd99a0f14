"""attnmeta.viz.images on given weights (no training): the queries shown, the heat maps
holding exactly the weights passed, and the PNG files written. That the weights are the
ones a trained learner uses is tested in test_viz_images.py."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
import torch
from PIL import Image
from torch import nn

from attnmeta.tasks.episode import Episode
from attnmeta.viz.images import (episode_attention, plot_patch_attention,
                                 plot_prototype_attention, plot_query_support_attention,
                                 shown_queries, write_attention_maps)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def episode(n_way: int = 3, k_shot: int = 2, q_query: int = 3, side: int = 8) -> Episode:
    generator = torch.Generator().manual_seed(0)
    return Episode(torch.rand(n_way * k_shot, 1, side, side, generator=generator),
                   torch.arange(n_way).repeat_interleave(k_shot),
                   torch.rand(n_way * q_query, 1, side, side, generator=generator),
                   torch.arange(n_way).repeat_interleave(q_query))


def images_of(figure, shape) -> list[torch.Tensor]:
    return [torch.as_tensor(im.get_array().data) for ax in figure.axes
            for im in ax.get_images() if tuple(im.get_array().shape) == tuple(shape)]


def test_shown_queries_take_the_first_of_each_class_evenly():
    query_y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2])
    assert shown_queries(query_y, 6) == [0, 3, 1, 4, 2, 5]  # 2 per class, class by class
    assert shown_queries(query_y, 9) == [0, 3, 6, 1, 4, 7, 2, 5, 8]
    assert shown_queries(query_y, 100) == [0, 3, 6, 1, 4, 7, 2, 5, 8]  # all there are
    assert shown_queries(query_y, 4) == [0, 1, 2]  # 4 // 3 = 1 per class


def test_query_support_map_holds_the_weights_of_the_shown_queries():
    data = episode()
    weights = torch.softmax(torch.randn(9, 6, generator=torch.Generator().manual_seed(2)), -1)
    figure = plot_query_support_attention(weights, data, max_queries=6, title="Stub")
    rows = shown_queries(data.query_y, 6)
    heat = images_of(figure, (6, 6))
    assert len(heat) == 1 and torch.equal(heat[0], weights[rows])
    heat_axes = next(ax for ax in figure.axes if ax.get_xlabel() == "support example (label)")
    assert [t.get_text() for t in heat_axes.get_xticklabels()] == ["0", "0", "1", "1", "2", "2"]
    assert [t.get_text() for t in heat_axes.get_yticklabels()] == ["0", "0", "1", "1", "2", "2"]
    thumbnails = images_of(figure, (8, 8))  # the 6 support images, then the shown queries
    assert len(thumbnails) == 6 + len(rows)
    assert all(torch.equal(t, data.support_x[i, 0]) for i, t in enumerate(thumbnails[:6]))
    assert all(torch.equal(t, data.query_x[r, 0]) for t, r in zip(thumbnails[6:], rows))
    assert figure._suptitle.get_text() == "Stub: query attention over the support set"


def test_prototype_map_draws_each_head():
    weights = torch.softmax(torch.randn(2, 3, 3, generator=torch.Generator().manual_seed(3)), -1)
    figure = plot_prototype_attention(weights)
    drawn = images_of(figure, (3, 3))
    assert len(drawn) == 2 and all(torch.equal(d, w) for d, w in zip(drawn, weights))
    assert [ax.get_title() for ax in figure.axes if ax.get_images()] == ["head 0", "head 1"]


def test_patch_map_overlays_each_shown_query():
    data = episode(side=8)
    weights = torch.rand(9, 2, 2, generator=torch.Generator().manual_seed(4))
    figure = plot_patch_attention(weights, data, max_queries=3)
    rows = shown_queries(data.query_y, 3)
    overlays = images_of(figure, (2, 2))
    assert len(overlays) == len(rows) == 3
    assert all(torch.equal(o, weights[r]) for o, r in zip(overlays, rows))
    overlay = [im for ax in figure.axes for im in ax.get_images()
               if im.get_array().shape == (2, 2)][0]
    assert overlay.get_extent() == [-0.5, 7.5, 7.5, -0.5]  # stretched over the 8x8 image


class StubLearner(nn.Module):
    """Returns fixed maps, and records how it was asked."""

    display_name = "Stub learner"

    def __init__(self, maps: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.maps, self.calls = maps, []

    def attention_maps(self, support_x, support_y, query_x, steps):
        self.calls.append((self.training, support_x, support_y, query_x, steps))
        return self.maps


def test_episode_attention_asks_the_learner_in_eval_mode():
    data = episode()
    learner = StubLearner({"query_support": torch.ones(9, 6) / 6})
    assert learner.training
    assert episode_attention(learner, data, steps=4) is learner.maps
    (training, support_x, support_y, query_x, steps), = learner.calls
    assert not training and steps == 4
    assert support_x is data.support_x and support_y is data.support_y
    assert query_x is data.query_x


def test_every_map_is_drawn_by_its_plot_and_written_as_a_png(tmp_path, monkeypatch):
    """Each map goes to its own plot function (small stand-ins here, so the test stays
    fast; the real plots are tested above) and is saved as attention_<name>.png."""
    from attnmeta.viz import images

    drawn = []

    def stand_in(kind):
        def plot(weights, *args, **kwargs):
            drawn.append((kind, weights, args, kwargs))
            return plt.figure(figsize=(2, 2))
        return plot

    for kind in ("query_support", "prototype", "patch"):
        monkeypatch.setattr(images, f"plot_{kind}_attention", stand_in(kind))
    data = episode()
    maps = {"query_support": torch.ones(9, 6) / 6, "prototypes": torch.ones(1, 3, 3) / 3,
            "patch_attention": torch.ones(9, 2, 2) / 4}
    paths = write_attention_maps(StubLearner(maps), data, tmp_path / "maps", steps=1)
    assert [p.name for p in paths] == ["attention_query_support.png",
                                       "attention_prototypes.png",
                                       "attention_patch_attention.png"]
    assert drawn == [("query_support", maps["query_support"], (data,),
                      {"title": "Stub learner"}),
                     ("prototype", maps["prototypes"], (), {}),
                     ("patch", maps["patch_attention"], (data,), {})]
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == sorted(p.name for p in paths)
    for path in paths:
        with Image.open(path) as image:
            assert image.format == "PNG"
    assert not plt.get_fignums()  # each figure is closed once written
