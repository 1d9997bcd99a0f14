"""CrossTransformers: query-aligned prototypes equal a naive loop over query and support
locations; relabelling permutes and reordering changes nothing; it trains, builds from a
config (over frozen cached tokens too) and runs through train / eval / adapt / predict."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from attnmeta.errors import ConfigError
from attnmeta.learners.cross_transformer import CrossTransformer
from attnmeta.learners.frozen import FrozenFeatureLearner
from attnmeta.models.conv4 import Conv4
from attnmeta.models.spatial import SpatialTokens
from attnmeta.tasks import Episode
from support import make_image_folder, tiny_config

TOL = dict(rtol=1e-10, atol=1e-12)
GRID, DIM = (2, 2), 3
L = GRID[0] * GRID[1]


def make_learner(heads: int = 2) -> CrossTransformer:
    torch.manual_seed(0)
    return CrossTransformer(nn.Identity(), GRID, DIM, key_dim=4, value_dim=6, heads=heads,
                            temperature=2.0).double()


def tokens(tasks: int, count: int, seed: int) -> torch.Tensor:
    """Flattened tokens ``[T, count, L·D]``."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(tasks, count, L * DIM, generator=gen, dtype=torch.float64)


def naive_logits(learner: CrossTransformer, support_z, support_y, query_z) -> torch.Tensor:
    """The paper's formula, one task, query, location, class and head at a time; also the
    weights ``[Q, L, S, L]`` (heads averaged)."""
    n_way = int(support_y.max()) + 1
    heads, d_k = learner.heads, learner.key.out_features // learner.heads
    d_v = learner.value.out_features // heads
    w_k, w_v = learner.key.weight, learner.value.weight
    logits = torch.zeros(query_z.shape[0], n_way, dtype=torch.float64)
    weights = torch.zeros(query_z.shape[0], L, support_z.shape[0], L, dtype=torch.float64)
    for q in range(query_z.shape[0]):
        x = query_z[q].reshape(L, DIM)
        for n in range(n_way):
            members = [j for j in range(support_z.shape[0]) if support_y[j] == n]
            distance = 0.0
            for p in range(L):
                for h in range(heads):
                    rows_k, rows_v = slice(h * d_k, (h + 1) * d_k), slice(h * d_v, (h + 1) * d_v)
                    q_p = w_k[rows_k] @ x[p]
                    scores, values = [], []
                    for j in members:
                        s = support_z[j].reshape(L, DIM)
                        for m in range(L):
                            scores.append(q_p @ (w_k[rows_k] @ s[m]) / d_k ** 0.5)
                            values.append(w_v[rows_v] @ s[m])
                    a = torch.softmax(torch.stack(scores), 0)
                    t = (a[:, None] * torch.stack(values)).sum(0)
                    distance = distance + ((w_v[rows_v] @ x[p] - t) ** 2).sum()
                    for index, j in enumerate(members):
                        weights[q, p, j] += a[index * L:(index + 1) * L] / heads
            logits[q, n] = -(distance / L) / learner.temperature
    return logits, weights


@pytest.mark.parametrize("support_y", [[0, 1, 2, 0, 1, 2], [1, 0, 0, 2, 0]],
                         ids=["balanced", "unequal-shots"])
def test_cross_attention_equals_a_naive_loop(support_y):
    learner = make_learner()
    support_y = torch.tensor(support_y)
    support_z, query_z = tokens(1, len(support_y), 1)[0], tokens(1, 3, 2)[0]
    expected, expected_weights = naive_logits(learner, support_z, support_y, query_z)
    logits = learner.logits_from_features(support_z[None], support_y[None], query_z[None])[0]
    torch.testing.assert_close(logits, expected, **TOL)
    maps = learner.feature_attention_maps(support_z, support_y, query_z)
    assert learner.attention_map_names() == ("correspondence",)
    torch.testing.assert_close(maps["correspondence"], expected_weights, **TOL)


def test_relabelling_permutes_and_reordering_the_support_changes_nothing():
    learner = make_learner()
    support_y = torch.tensor([[0, 1, 2, 0, 1, 2], [2, 2, 1, 1, 0, 0]])
    support_z, query_z = tokens(2, 6, 3), tokens(2, 4, 4)
    logits = learner.logits_from_features(support_z, support_y, query_z)
    relabel = torch.tensor([2, 0, 1])                  # class c becomes relabel[c]
    relabelled = learner.logits_from_features(support_z, relabel[support_y], query_z)
    torch.testing.assert_close(relabelled[..., relabel], logits, **TOL)
    order = torch.tensor([4, 1, 5, 0, 3, 2])
    reordered = learner.logits_from_features(support_z[:, order], support_y[:, order], query_z)
    torch.testing.assert_close(reordered, logits, **TOL)


def tiny_conv4_learner() -> CrossTransformer:
    torch.manual_seed(0)
    encoder = SpatialTokens(Conv4(1, 0, hidden=4, image_size=16, norm="batch"), 16)
    return CrossTransformer(encoder, encoder.grid, encoder.token_dim, key_dim=4, value_dim=4)


def image_episode(tasks: int = 2, n_way: int = 3) -> Episode:
    gen = torch.Generator().manual_seed(5)
    labels = torch.arange(n_way).expand(tasks, -1)
    return Episode(torch.randn(tasks, n_way, 1, 16, 16, generator=gen), labels,
                   torch.randn(tasks, n_way, 1, 16, 16, generator=gen), labels)


def test_a_training_step_reaches_every_parameter():
    learner, batch = tiny_conv4_learner(), image_episode()
    output = learner.training_step(batch)
    assert torch.isfinite(output.loss) and 0 <= output.metrics["accuracy"] <= 1
    output.loss.backward()
    for name, parameter in learner.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_built_from_a_config_over_spatial_tokens(tmp_path):
    from attnmeta.runs.build import build_learner

    config = tiny_config(tmp_path, "cross_transformer", heads=2, key_dim=8, value_dim=6)
    learner = build_learner(config)
    assert isinstance(learner.encoder, SpatialTokens) and learner.grid == (2, 2)  # 16: 8, 4, 2
    assert learner.reads_spatial_tokens and learner.heads == 2
    support_x, query_x = torch.rand(2, 3, 1, 16, 16), torch.rand(2, 4, 1, 16, 16)
    support_y = torch.arange(3).expand(2, -1)
    assert learner.logits(support_x, support_y, query_x).shape == (2, 4, 3)


def test_a_backbone_without_spatial_tokens_is_refused(tmp_path):
    from attnmeta.models.feature_head import FeatureHead
    from attnmeta.runs.build import BACKBONES, build_learner, register_backbone

    register_backbone("flat_test", lambda m, channels, out_dim, size: FeatureHead(size * size))
    try:
        config = tiny_config(tmp_path, "cross_transformer")
        config.model.backbone = "flat_test"
        with pytest.raises(ConfigError, match="'cross_transformer'.*'flat_test'"):
            build_learner(config)
    finally:
        BACKBONES.pop("flat_test")


def test_frozen_tokens_are_cached_as_computed_on_the_fly(tmp_path):
    from attnmeta.runs.build import build_backbone, build_learner
    from attnmeta.runs.features import FeatureSplit, cached_features

    config = tiny_config(tmp_path, "cross_transformer")
    config.model.norm = "running"
    torch.manual_seed(1)
    pretrained = build_backbone(config, 0).state_dict()   # a pretrain run's encoder
    config.model.freeze, config.model.init = True, "pretrain-run"
    learner = build_learner(config, encoder_state=pretrained)
    assert isinstance(learner, FrozenFeatureLearner) and learner.reads_spatial_tokens
    encoder = learner.frozen_encoder
    assert isinstance(encoder, SpatialTokens)
    torch.testing.assert_close(encoder.backbone.state_dict(), pretrained)
    images = torch.rand(5, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    split = FeatureSplit(images, torch.tensor([0, 1, 2, 0, 1]), ["a", "b", "c"], "train")
    written = cached_features(encoder, split, tmp_path / "cache")
    read = cached_features(encoder, split, tmp_path / "cache")
    with torch.no_grad():
        on_the_fly = encoder.backbone.token_map(images).flatten(1)
    assert written.features.shape == (5, 4 * config.model.hidden)
    torch.testing.assert_close(written.features, on_the_fly)
    torch.testing.assert_close(read.features, on_the_fly)
    # the inner learner reads those cached tokens as its features
    support_y = torch.tensor([0, 1, 2])
    expected = learner.learner.predict(on_the_fly[:3], support_y, on_the_fly[3:])
    task = learner.fit_task(images[:3], support_y)
    torch.testing.assert_close(learner.predict_fitted(task, images[3:]), expected)


def test_trains_evaluates_adapts_predicts_and_exports_through_the_cli(tmp_path):
    from attnmeta.cli import main
    from attnmeta.fewshot import FewShotClassifier
    from attnmeta.runs.episodic import evaluate_checkpoint, train_run

    images = make_image_folder(tmp_path / "images")
    config = tiny_config(images, "cross_transformer", steps=3, key_dim=8, value_dim=8)
    config.train.eval_every = 0
    train_run(config, tmp_path / "run", progress=False, will_evaluate=False)
    result = evaluate_checkpoint(tmp_path / "run", episodes=4, progress=False, save=False)
    assert result.learner == "cross_transformer" and 0 <= result.accuracy <= 1
    runner = CliRunner()
    outcome = runner.invoke(main, ["adapt", str(tmp_path / "run"), "--support",
                                   str(images / "test"), "--out", str(tmp_path / "model"),
                                   "--no-progress"])
    assert outcome.exit_code == 0, outcome.output
    queries = sorted((images / "val" / "class_02").glob("*.png"))[:2]
    outcome = runner.invoke(main, ["predict", str(tmp_path / "model"), *map(str, queries),
                                   "--json"])
    assert outcome.exit_code == 0, outcome.output
    labels = [json.loads(line)["label"] for line in outcome.stdout.splitlines()]
    assert labels == FewShotClassifier.load(tmp_path / "model").predict(queries)
    if importlib.util.find_spec("onnxruntime") is not None:  # tokens export as features do
        outcome = runner.invoke(main, ["export", str(tmp_path / "model"), "--onnx",
                                       str(tmp_path / "model.onnx")])
        assert outcome.exit_code == 0, outcome.output
        assert float(outcome.stdout.split("matches PyTorch to ")[1].split()[0]) < 1e-4
