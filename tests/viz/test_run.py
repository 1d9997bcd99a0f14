"""attnmeta.viz.run: which drawing a trained run gets, on which episode (the run is a stand-in
with the fields load_run's result has; test_viz_images.py drives ``attnmeta viz`` itself)."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from PIL import Image
from torch import nn

from attnmeta.tasks.sampler import FewShotEpisodes
from attnmeta.viz import run as viz_run
from attnmeta.viz.run import write_run_attention_maps

SHAPE = SimpleNamespace(n_way=2, k_shot=1, q_query=2)


class Split:
    """A labelled split: 4 classes of 5 tiny images, each image filled with its index."""

    def __init__(self) -> None:
        self.items = torch.arange(20.0)[:, None, None, None].expand(20, 1, 4, 4) / 20
        self.labels = torch.arange(4).repeat_interleave(5)
        self.class_names = [f"class {c}" for c in range(4)]


class Matcher(nn.Module):
    """Attention over the support set, uniform."""

    display_name = "Matcher"

    def attention_maps(self, support_x, support_y, query_x, steps):
        return {"query_support": torch.full((len(query_x), len(support_x)), 1 / len(support_x))}


def stand_in_run(tokenizer=None) -> SimpleNamespace:
    asked = []
    split = Split()
    return SimpleNamespace(learner=Matcher(), tokenizer=tokenizer, asked=asked, data=split,
                           config=SimpleNamespace(data=SimpleNamespace(test=SHAPE)),
                           split=lambda name: asked.append(name) or split)


def test_an_image_run_draws_episode_0_of_the_seed_shaped_as_its_test_episodes(tmp_path,
                                                                            monkeypatch):
    drawn = []
    monkeypatch.setattr(viz_run, "write_attention_maps",
                        lambda learner, episode, out_dir: drawn.append((learner, episode,
                                                                        out_dir)) or [])
    run = stand_in_run()
    write_run_attention_maps(run, "val", 11, tmp_path / "maps")
    (learner, episode, out_dir), = drawn
    assert run.asked == ["val"] and learner is run.learner and out_dir == tmp_path / "maps"
    expected = FewShotEpisodes(run.data.items, run.data.labels.tolist(), 2, 1, 2, 1, 11)[0]
    for field in ("support_x", "support_y", "query_x", "query_y"):
        assert torch.equal(getattr(episode, field), getattr(expected, field)), field
    assert episode.support_x.shape == (2, 1, 4, 4) and episode.query_x.shape == (4, 1, 4, 4)
    write_run_attention_maps(run, "val", 12, tmp_path / "maps")
    assert not torch.equal(drawn[1][1].query_x, episode.query_x)  # another seed, another one


def test_an_image_run_writes_its_maps(tmp_path):
    paths = write_run_attention_maps(stand_in_run(), "test", 0, tmp_path / "maps")
    assert [p.name for p in paths] == ["attention_query_support.png"]
    with Image.open(paths[0]) as image:
        assert image.format == "PNG"


def test_a_run_with_a_tokenizer_is_drawn_as_text(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(viz_run, "write_text_attention_maps",
                        lambda *args: calls.append(args) or ["text.png"])
    monkeypatch.setattr(viz_run, "write_attention_maps",
                        lambda *args: (_ for _ in ()).throw(AssertionError("image drawing")))
    tokenizer = object()
    run = stand_in_run(tokenizer)
    assert write_run_attention_maps(run, "test", 5, tmp_path) == ["text.png"]
    assert calls == [(run.learner, run.data, 2, 1, 2, 5, tmp_path, tokenizer)]
    assert run.asked == ["test"]
