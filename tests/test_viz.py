"""Attention maps: the weights drawn are the weights the model used."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image

from attnmeta.cli import main
from attnmeta.experiment import load_run, load_split, make_episodes, train_run
from attnmeta.viz import (episode_attention, plot_prototype_attention,
                          plot_query_support_attention, shown_queries)
from test_experiment import make_image_folder, tiny_config


def trained(tmp_path, learner_name):
    data_root = make_image_folder(tmp_path / "images")
    train_run(tiny_config(data_root, learner_name, steps=3), tmp_path / "run", progress=False)
    config, learner, _ = load_run(tmp_path / "run")
    episode = make_episodes(load_split(config, "test"), config.data.test, 1, seed=7)[0]
    return learner, episode


def test_matching_map_draws_the_weights_behind_the_prediction(tmp_path):
    learner, episode = trained(tmp_path, "matching")
    weights = episode_attention(learner, episode)["query_support"]
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[0]))
    # The prediction is exactly the attention-weighted support labels.
    logits = learner.predict(episode.support_x, episode.support_y, episode.query_x)
    n_way = int(episode.support_y.max()) + 1
    torch.testing.assert_close(logits.exp(), weights @ F.one_hot(episode.support_y, n_way).float())
    figure = plot_query_support_attention(weights, episode, max_queries=6)
    rows = shown_queries(episode.query_y, 6)
    assert sorted(episode.query_y[rows].tolist()) == [0, 0, 1, 1, 2, 2]
    shown = weights[rows]
    drawn = [im.get_array() for ax in figure.axes for im in ax.get_images()
             if im.get_array().shape == tuple(shown.shape)]
    assert len(drawn) == 1 and torch.equal(torch.as_tensor(drawn[0].data), shown)


def test_feat_map_draws_the_prototype_attention(tmp_path):
    learner, episode = trained(tmp_path, "feat")
    weights = episode_attention(learner, episode)["prototypes"]
    assert weights.shape == (1, 3, 3)
    torch.testing.assert_close(weights.sum(-1), torch.ones(1, 3))
    figure = plot_prototype_attention(weights)
    drawn = [im.get_array() for ax in figure.axes for im in ax.get_images()]
    assert torch.equal(torch.as_tensor(drawn[0].data), weights[0])


def test_viz_command_writes_pngs_and_refuses_learners_without_attention(tmp_path):
    trained(tmp_path, "matching")
    out = tmp_path / "maps"
    result = CliRunner().invoke(main, ["viz", str(tmp_path / "run"), "--episode-seed", "3",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    with Image.open(out / "attention_query_support.png") as image:
        assert image.size[0] > 200 and image.size[1] > 200
    data_root = tmp_path / "images"
    train_run(tiny_config(data_root, "protonet", steps=1), tmp_path / "proto", progress=False)
    result = CliRunner().invoke(main, ["viz", str(tmp_path / "proto"), "--out", str(out)])
    assert result.exit_code != 0
    assert "ProtoNet has no attention to draw" in result.output.strip().splitlines()[-1]
