"""Attention maps: the weights drawn are the weights the model used."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image

from attnmeta.cli import main
from attnmeta.learners.base import embed_episode
from attnmeta.runs.episodic import load_run, load_split, make_episodes, train_run
from attnmeta.viz import (episode_attention, plot_patch_attention, plot_prototype_attention,
                          plot_query_support_attention, shown_queries, write_attention_maps)
from support import make_image_folder, tiny_config


def trained(tmp_path, learner_name, **model_fields):
    data_root = make_image_folder(tmp_path / "images")
    config = tiny_config(data_root, learner_name, steps=3)
    for key, value in model_fields.items():
        setattr(config.model, key, value)
    train_run(config, tmp_path / "run", progress=False)
    run = load_run(tmp_path / "run")
    episode = make_episodes(load_split(run.config, "test"), run.config.data.test, 1, seed=7)[0]
    return run.learner, episode


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


def test_in_context_map_draws_the_query_to_support_attention(tmp_path):
    learner, episode = trained(tmp_path, "incontext", depth=1, heads=2)
    weights = episode_attention(learner, episode)["query_support"]
    assert weights.shape == (episode.query_x.shape[0], episode.support_x.shape[0])
    # Same values as the forward pass: the last block's query rows over the support columns,
    # which with the query's attention to itself make a distribution.
    with torch.no_grad():
        support_z, query_z = embed_episode(learner.encoder, episode.support_x[None],
                                           episode.query_x[None])
        _, _, blocks = learner.read_episode(support_z, episode.support_y[None], query_z,
                                            need_weights=True)
    last = blocks[-1][0].mean(0)
    n_support = episode.support_x.shape[0]
    torch.testing.assert_close(weights, last[n_support:, :n_support])
    torch.testing.assert_close(weights.sum(-1) + torch.diagonal(last[n_support:, n_support:]),
                               torch.ones(weights.shape[0]))
    paths = write_attention_maps(learner, episode, tmp_path / "maps")
    assert [p.name for p in paths] == ["attention_query_support.png"]


def test_vit_map_draws_the_adapted_models_cls_attention_over_patches(tmp_path):
    learner, episode = trained(tmp_path, "maml", backbone="vit", patch_size=4, depth=1,
                               heads=2)
    weights = episode_attention(learner, episode, steps=2)["patch_attention"]
    queries = episode.query_x.shape[0]
    assert weights.shape == (queries, 4, 4)  # 16x16 images in 4x4 patches
    adapted = learner.adapt(episode.support_x, episode.support_y, steps=2)
    with torch.no_grad():
        logits, blocks = torch.func.functional_call(learner.model, adapted, (episode.query_x,),
                                                    {"need_weights": True})
    cls_row = blocks[-1].mean(1)[:, 0]  # [Q, 1 + 16]
    torch.testing.assert_close(weights.reshape(queries, 16), cls_row[:, 1:])
    torch.testing.assert_close(weights.sum((1, 2)) + cls_row[:, 0], torch.ones(queries))
    # The attention drawn belongs to the model that makes the prediction.
    torch.testing.assert_close(logits, learner.predict(episode.support_x, episode.support_y,
                                                       episode.query_x, steps=2))
    figure = plot_patch_attention(weights, episode, max_queries=3)
    overlays = [im.get_array() for ax in figure.axes for im in ax.get_images()
                if im.get_array().shape == (4, 4)]
    rows = shown_queries(episode.query_y, 3)
    assert len(overlays) == len(rows)
    for overlay, row in zip(overlays, rows):
        assert torch.equal(torch.as_tensor(overlay.data), weights[row])
