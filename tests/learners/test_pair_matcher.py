"""The pair matcher: one score per (query, support image) pair, written out pair by pair;
relabelling permutes and reordering changes nothing; it trains and builds from a config."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attnmeta.errors import ConfigError
from attnmeta.learners.frozen import FrozenFeatureLearner
from attnmeta.learners.pair_matcher import PairMatcher
from attnmeta.models.conv4 import Conv4
from attnmeta.models.spatial import SpatialTokens
from attnmeta.tasks import Episode
from support import tiny_config

TOL = dict(rtol=1e-10, atol=1e-12)
GRID, DIM = (2, 2), 3
L = GRID[0] * GRID[1]


def make_learner() -> PairMatcher:
    torch.manual_seed(0)
    return PairMatcher(nn.Identity(), GRID, DIM, width=8, heads=2).double()


def tokens(tasks: int, count: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(tasks, count, L * DIM, generator=gen, dtype=torch.float64)


def one_pair(learner: PairMatcher, query: torch.Tensor, support: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """The score of one pair of flattened images ``[L·D]`` and the query's cross-attention
    ``[H, L, L]``, computed for that pair alone."""
    def within(z):
        x = learner.embed(z.reshape(1, L, DIM)) + learner.position
        return learner.within(x)[0]
    q, s = within(query), within(support)
    q_out, weights = learner.between(q, s, need_weights=True)
    s_out, _ = learner.between(s, q)
    a, b = learner.norm(q_out).mean(1)[0], learner.norm(s_out).mean(1)[0]
    return learner.score(torch.cat([a, b, (a - b).abs(), a * b]))[0], weights[0]


def test_scores_are_each_pair_compared_alone_and_classes_average_them():
    learner = make_learner()
    support_y = torch.tensor([0, 1, 1, 2, 0])
    support_z, query_z = tokens(1, 5, 1)[0], tokens(1, 3, 2)[0]
    logits = learner.logits_from_features(support_z[None], support_y[None], query_z[None])[0]
    maps = learner.feature_attention_maps(support_z, support_y, query_z)["correspondence"]
    assert maps.shape == (3, L, 5, L)
    for q in range(3):
        pairs = [one_pair(learner, query_z[q], support_z[j]) for j in range(5)]
        scores = torch.stack([score for score, _ in pairs])
        expected = torch.stack([scores[support_y == n].mean() for n in range(3)])
        torch.testing.assert_close(logits[q], expected, **TOL)
        for j, (_, weights) in enumerate(pairs):
            torch.testing.assert_close(maps[q, :, j], weights.mean(0), **TOL)


def test_relabelling_permutes_and_reordering_the_support_changes_nothing():
    learner = make_learner()
    support_y = torch.tensor([[0, 1, 2, 0, 1, 2], [2, 2, 1, 1, 0, 0]])
    support_z, query_z = tokens(2, 6, 3), tokens(2, 4, 4)
    logits = learner.logits_from_features(support_z, support_y, query_z)
    relabel = torch.tensor([2, 0, 1])
    relabelled = learner.logits_from_features(support_z, relabel[support_y], query_z)
    torch.testing.assert_close(relabelled[..., relabel], logits, **TOL)
    order = torch.tensor([4, 1, 5, 0, 3, 2])
    reordered = learner.logits_from_features(support_z[:, order], support_y[:, order], query_z)
    torch.testing.assert_close(reordered, logits, **TOL)


def test_a_training_step_reaches_every_parameter():
    torch.manual_seed(0)
    encoder = SpatialTokens(Conv4(1, 0, hidden=4, image_size=16, norm="batch"), 16)
    learner = PairMatcher(encoder, encoder.grid, encoder.token_dim, width=8, heads=2)
    gen = torch.Generator().manual_seed(5)
    labels = torch.arange(3).expand(2, -1)
    batch = Episode(torch.randn(2, 3, 1, 16, 16, generator=gen), labels,
                    torch.randn(2, 3, 1, 16, 16, generator=gen), labels)
    output = learner.training_step(batch)
    assert torch.isfinite(output.loss)
    output.loss.backward()
    for name, parameter in learner.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_built_from_a_config_end_to_end_or_over_frozen_tokens(tmp_path):
    from attnmeta.runs.build import build_backbone, build_learner

    config = tiny_config(tmp_path, "pair_matcher", width=8, heads=2)
    learner = build_learner(config)
    assert isinstance(learner.encoder, SpatialTokens) and learner.grid == (2, 2)
    config.model.norm = "running"
    state = build_backbone(config, 0).state_dict()
    config.model.freeze, config.model.init = True, "pretrain-run"
    frozen = build_learner(config, encoder_state=state)
    assert isinstance(frozen, FrozenFeatureLearner) and frozen.learner.grid == (2, 2)
    images = torch.rand(5, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    task = frozen.fit_task(images[:3], torch.tensor([0, 1, 2]))
    assert frozen.predict_fitted(task, images[3:]).shape == (2, 3)
    assert frozen.explain_fitted(task, images[3:])["correspondence"].shape == (2, 4, 3, 4)


def test_the_heads_must_split_the_width(tmp_path):
    with pytest.raises(ConfigError, match="learner.width"):
        tiny_config(tmp_path, "pair_matcher", width=6, heads=4)
