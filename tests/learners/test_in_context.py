"""The in-context learners: no gradient steps, permutation-invariant in the support set."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnmeta.learners import InContextClassifier, InContextLearner
from attnmeta.learners.in_context import elmes, support_query_mask
from attnmeta.learners.base import embed_episode
from attnmeta.models import AttentiveNP
from attnmeta.tasks import Episode, SinusoidTasks


def test_prediction_ignores_support_order_and_loss_is_query_mse():
    torch.manual_seed(0)
    learner = InContextLearner(AttentiveNP(d_model=16, n_heads=2, n_layers=1).double())
    batch = SinusoidTasks(k_shot=6, q_query=4).batch(0, 3)
    batch = type(batch)(*(t.double() for t in (batch.support_x, batch.support_y,
                                               batch.query_x, batch.query_y)))
    prediction = learner.predict_batch(batch)
    permutation = torch.randperm(6)
    shuffled = learner.model(batch.support_x[:, permutation], batch.support_y[:, permutation],
                             batch.query_x)
    torch.testing.assert_close(shuffled, prediction, rtol=1e-10, atol=1e-12)
    output = learner.training_step(batch)
    torch.testing.assert_close(output.loss, F.mse_loss(prediction, batch.query_y))
    # Each task's prediction depends on its own support set only.
    single = learner.predict(batch.support_x[1], batch.support_y[1], batch.query_x[1])
    torch.testing.assert_close(single, prediction[1], rtol=1e-10, atol=1e-12)


def test_attention_weights_are_a_distribution_over_the_support_set():
    torch.manual_seed(0)
    model = AttentiveNP(d_model=16, n_heads=2, n_layers=1)
    batch = SinusoidTasks(k_shot=5, q_query=3).batch(0, 2)
    prediction, weights = model(batch.support_x, batch.support_y, batch.query_x, need_weights=True)
    assert weights.shape == (2, 2, 3, 5)  # [tasks, heads, queries, support]
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 3))
    torch.testing.assert_close(prediction, model(batch.support_x, batch.support_y, batch.query_x))


def make_classifier(seed: int = 0) -> InContextClassifier:
    torch.manual_seed(seed)
    encoder = nn.Sequential(nn.Linear(6, 8), nn.Tanh())
    return InContextClassifier(encoder, feature_dim=8, d_model=16, depth=2, n_heads=2).double()


def classification_episode(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    support_y = torch.tensor([[0, 0, 1, 1, 2, 2], [2, 1, 0, 2, 1, 0]])
    return (torch.randn(2, 6, 6, generator=gen, dtype=torch.float64), support_y,
            torch.randn(2, 4, 6, generator=gen, dtype=torch.float64))


def test_in_context_classifier_does_not_depend_on_class_order_or_support_order():
    learner = make_classifier()
    support_x, support_y, query_x = classification_episode()
    logits = learner.logits(support_x, support_y, query_x)
    assert logits.shape == (2, 4, 3)
    relabel = torch.tensor([2, 0, 1])  # class c is called relabel[c]
    relabelled = learner.logits(support_x, relabel[support_y], query_x)
    torch.testing.assert_close(relabelled[..., relabel], logits, rtol=1e-10, atol=1e-12)
    order = torch.randperm(6)
    shuffled = learner.logits(support_x[:, order], support_y[:, order], query_x)
    torch.testing.assert_close(shuffled, logits, rtol=1e-10, atol=1e-12)


def test_in_context_queries_do_not_see_each_other():
    learner = make_classifier()
    support_x, support_y, query_x = classification_episode()
    logits = learner.logits(support_x, support_y, query_x)
    changed = query_x.clone()
    changed[:, 1:] = torch.randn_like(changed[:, 1:])
    torch.testing.assert_close(learner.logits(support_x, support_y, changed)[:, 0],
                               logits[:, 0], rtol=1e-10, atol=1e-12)
    # ... but a query does depend on the support set.
    other_support = support_x + 0.5
    assert not torch.allclose(learner.logits(other_support, support_y, query_x), logits)


def test_in_context_attention_mask_and_weights():
    mask = support_query_mask(3, 2)
    expected = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 0, 0],
                             [1, 1, 1, 1, 0], [1, 1, 1, 0, 1]], dtype=torch.bool)
    assert torch.equal(mask, expected)
    learner = make_classifier()
    support_x, support_y, query_x = classification_episode()
    support_z, query_z = embed_episode(learner.encoder, support_x, query_x)
    _, _, weights = learner.read_episode(support_z, support_y, query_z, need_weights=True)
    last = weights[-1]  # [T, H, S+Q, S+Q]
    torch.testing.assert_close(last.sum(-1), torch.ones(2, 2, 10, dtype=torch.float64))
    assert torch.all(last[..., ~support_query_mask(6, 4)] == 0)
    support_part = learner.attention(support_x, support_y, query_x)
    self_part = torch.diagonal(last.mean(1)[:, 6:, 6:], dim1=-2, dim2=-1)
    torch.testing.assert_close(support_part.sum(-1) + self_part,
                               torch.ones(2, 4, dtype=torch.float64))


def test_in_context_classifier_learns_a_separable_task():
    """A few hundred steps on episodes whose classes are random Gaussian blobs: query
    accuracy on fresh episodes well above chance (1/3)."""
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16))
    learner = InContextClassifier(encoder, 16, d_model=16, depth=1, n_heads=2)
    optimizer = torch.optim.Adam(learner.parameters(), lr=3e-3)

    def episodes(seed: int):
        gen = torch.Generator().manual_seed(seed)
        centres = 2 * torch.randn(8, 3, 6, generator=gen)
        labels = torch.arange(3).repeat(2)
        query_labels = torch.arange(3).repeat(3)
        support = centres[:, labels] + 0.3 * torch.randn(8, 6, 6, generator=gen)
        query = centres[:, query_labels] + 0.3 * torch.randn(8, 9, 6, generator=gen)
        return Episode(support, labels.expand(8, -1), query, query_labels.expand(8, -1))

    for step in range(150):
        optimizer.zero_grad()
        learner.training_step(episodes(step)).loss.backward()
        optimizer.step()
    test = episodes(10_000)
    accuracy = (learner.predict_batch(test).argmax(-1) == test.query_y).float().mean()
    assert accuracy > 0.9


# --------------------------------------------------------- CAML's fixed label encoding
@pytest.mark.parametrize("n_way", [2, 3, 5, 20])
def test_elmes_vectors_have_equal_norms_and_equal_pairwise_angles(n_way):
    vectors = elmes(n_way, 64, dtype=torch.float64)
    assert vectors.shape == (n_way, 64)
    torch.testing.assert_close(vectors.norm(dim=1), torch.ones(n_way, dtype=torch.float64))
    cosine = vectors @ vectors.T  # unit vectors: the Gram matrix is the cosines
    expected = torch.full((n_way, n_way), -1.0 / (n_way - 1), dtype=torch.float64)
    expected.fill_diagonal_(1.0)
    torch.testing.assert_close(cosine, expected)
    torch.testing.assert_close(vectors.sum(0), torch.zeros(64, dtype=torch.float64))  # centred


def test_elmes_needs_as_many_dimensions_as_classes():
    with pytest.raises(ValueError, match="expected 2 <= n_way <= 4"):
        elmes(5, 4)
    with pytest.raises(ValueError, match="label_encoding='onehot': expected one of"):
        InContextClassifier(nn.Linear(6, 8), 8, label_encoding="onehot")


def test_elmes_classifier_gives_each_label_index_its_fixed_vector():
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Linear(6, 8), nn.Tanh())
    learner = InContextClassifier(encoder, feature_dim=8, d_model=16, depth=2, n_heads=2,
                                  label_encoding="elmes").double()
    assert not hasattr(learner, "label_embedding") and learner.elmes_scale.requires_grad
    support_x, support_y, query_x = classification_episode()
    logits = learner.logits(support_x, support_y, query_x)
    assert logits.shape == (2, 4, 3) and torch.isfinite(logits).all()
    # reordering the support set (examples with their labels) still changes nothing
    order = torch.tensor([5, 3, 1, 0, 2, 4])
    torch.testing.assert_close(learner.logits(support_x[:, order], support_y[:, order], query_x),
                               logits)
    # relabelling is no longer an exact permutation: label y always has ELMES vector y
    relabel = torch.tensor([2, 0, 1])
    permuted = learner.logits(support_x, relabel[support_y], query_x)[..., relabel]
    assert not torch.allclose(permuted, logits)


def test_elmes_classifier_training_step_runs_and_learns():
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16))
    learner = InContextClassifier(encoder, 16, d_model=16, depth=1, n_heads=2,
                                  label_encoding="elmes")
    optimizer = torch.optim.Adam(learner.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(1)
    centres = 2 * torch.randn(8, 3, 6, generator=gen)
    labels, query_labels = torch.arange(3).repeat(2), torch.arange(3).repeat(3)
    batch = Episode(centres[:, labels] + 0.3 * torch.randn(8, 6, 6, generator=gen),
                    labels.expand(8, -1),
                    centres[:, query_labels] + 0.3 * torch.randn(8, 9, 6, generator=gen),
                    query_labels.expand(8, -1))
    before = learner.elmes_scale.detach().clone()
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        output = learner.training_step(batch)
        output.loss.backward()
        optimizer.step()
        losses.append(float(output.loss.detach()))
    assert all(map(math.isfinite, losses)) and losses[-1] < losses[0]
    assert not torch.equal(learner.elmes_scale.detach(), before)  # the scale is trained


# -- incontext_spatial: every spatial token of every image -------------------------------
SPATIAL_GRID, SPATIAL_DIM = (2, 2), 5


def spatial_learner(label_encoding: str = "learned"):
    from attnmeta.learners.in_context import InContextSpatialClassifier

    torch.manual_seed(0)
    return InContextSpatialClassifier(nn.Identity(), SPATIAL_GRID, SPATIAL_DIM, d_model=8,
                                      depth=2, n_heads=2,
                                      label_encoding=label_encoding).double().eval()


def spatial_tokens(tasks: int, count: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(tasks, count, 4 * SPATIAL_DIM, generator=gen, dtype=torch.float64)


def test_spatial_mask_lets_a_query_see_the_support_and_its_own_tokens_only():
    from attnmeta.learners.in_context import spatial_support_query_mask

    mask = spatial_support_query_mask(2, 2, 3)                     # 6 support, 2 × 3 query
    assert mask.shape == (12, 12) and mask[:, :6].all()
    assert not mask[:6, 6:].any()                                  # support: support only
    assert mask[6:9, 6:9].all() and mask[9:, 9:].all()             # each query: its own
    assert not mask[6:9, 9:].any() and not mask[9:, 6:9].any()     # never the other's
    assert torch.equal(spatial_support_query_mask(3, 2, 1), support_query_mask(3, 2))


def test_spatial_in_context_relabelling_permutes_and_support_order_changes_nothing():
    """What the pooled learner promises with learned labels, promised again."""
    learner = spatial_learner()
    support_y = torch.tensor([[0, 1, 2, 0, 1, 2], [2, 2, 1, 1, 0, 0]])
    support_z, query_z = spatial_tokens(2, 6, 1), spatial_tokens(2, 4, 2)
    logits = learner.logits_from_features(support_z, support_y, query_z)
    relabel = torch.tensor([2, 0, 1])                              # class c becomes relabel[c]
    relabelled = learner.logits_from_features(support_z, relabel[support_y], query_z)
    torch.testing.assert_close(relabelled[..., relabel], logits, rtol=1e-10, atol=1e-12)
    order = torch.tensor([4, 1, 5, 0, 3, 2])
    reordered = learner.logits_from_features(support_z[:, order], support_y[:, order], query_z)
    torch.testing.assert_close(reordered, logits, rtol=1e-10, atol=1e-12)
    # queries do not see one another: one query alone scores as in its batch
    alone = learner.logits_from_features(support_z, support_y, query_z[:, 2:3])
    torch.testing.assert_close(alone, logits[:, 2:3], rtol=1e-10, atol=1e-12)


def test_spatial_in_context_correspondence_is_the_last_blocks_query_rows():
    learner = spatial_learner("elmes")
    support_y = torch.tensor([0, 1, 2, 1])
    support_z, query_z = spatial_tokens(1, 4, 3)[0], spatial_tokens(1, 3, 4)[0]
    maps = learner.feature_attention_maps(support_z, support_y, query_z)
    _, _, weights = learner.read_episode(support_z[None], support_y[None], query_z[None],
                                         need_weights=True)
    last = weights[-1][0].mean(0)                                  # [(S+Q)·L, (S+Q)·L]
    found = maps["correspondence"]
    assert found.shape == (3, 4, 4, 4)
    for q in range(3):
        for p in range(4):
            row = last[16 + 4 * q + p]
            torch.testing.assert_close(found[q, p], row[:16].reshape(4, 4))
            # the rest of the row: its own image's tokens
            own = row[16 + 4 * q:16 + 4 * q + 4].sum()
            torch.testing.assert_close(found[q, p].sum() + own, torch.tensor(1.0).double())
    torch.testing.assert_close(maps["query_support"], found.sum(-1).mean(1))
    assert learner.token_grid() == SPATIAL_GRID and learner.reads_spatial_tokens


def test_spatial_in_context_training_step_is_finite_and_reaches_every_parameter(tmp_path):
    from attnmeta.learners.in_context import InContextSpatialClassifier
    from attnmeta.models.spatial import SpatialTokens
    from attnmeta.runs.build import build_learner
    from support import tiny_config

    config = tiny_config(tmp_path, "incontext_spatial", label_encoding="elmes")
    config.model.heads = 2
    learner = build_learner(config)
    assert isinstance(learner, InContextSpatialClassifier)
    assert isinstance(learner.encoder, SpatialTokens) and learner.token_grid() == (2, 2)
    gen = torch.Generator().manual_seed(5)
    labels = torch.arange(3).expand(2, -1)
    batch = Episode(torch.randn(2, 3, 1, 16, 16, generator=gen), labels,
                    torch.randn(2, 3, 1, 16, 16, generator=gen), labels)
    output = learner.training_step(batch)
    assert torch.isfinite(output.loss) and 0 <= output.metrics["accuracy"] <= 1
    output.loss.backward()
    for name, parameter in learner.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name
