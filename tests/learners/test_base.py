"""attnmeta.learners.base: the learner base classes' defaults, checked with small learners
defined here (a whole new learner through train, adapt and export: fewshot/test_new_learner.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnmeta.errors import InputError
from attnmeta.learners.base import (EpisodeLearner, MetaLearner, class_count, embed_episode,
                                    query_metrics)
from attnmeta.tasks import Episode


class NearestMean(EpisodeLearner):
    """Negative squared distance to each class mean: a head in one line."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def logits_from_features(self, support_z, support_y, query_z):
        n = class_count(support_y)
        means = torch.stack([(support_z * (support_y == c)[..., None]).sum(1)
                             / (support_y == c).sum(1, keepdim=True) for c in range(n)], 1)
        return -((query_z[:, :, None] - means[:, None]) ** 2).sum(-1)


class KeepsSupport(MetaLearner):
    """A learner with only ``predict``: the base keeps its support set to fit a task."""

    def predict(self, support_x, support_y, query_x, **kwargs):
        return query_x.sum(-1, keepdim=True) + support_x.sum()


def episodes(tasks: int = 2) -> Episode:
    torch.manual_seed(0)
    return Episode(torch.randn(tasks, 4, 3), torch.tensor([[0, 0, 1, 1]] * tasks),
                   torch.randn(tasks, 5, 3), torch.tensor([[0, 1, 1, 0, 1]] * tasks))


def test_class_count_is_the_largest_label_plus_one():
    assert class_count(torch.tensor([[0, 2, 1], [1, 0, 0]])) == 3
    assert class_count(torch.tensor([0, 0, 4])) == 5  # not the distinct count (3)


def test_query_metrics_hold_accuracy_only_for_class_targets():
    predictions = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    metrics = query_metrics(torch.tensor(0.5), predictions, torch.tensor([1, 1, 1]))
    assert metrics == {"loss": 0.5, "accuracy": pytest.approx(2 / 3)}
    assert query_metrics(torch.tensor(2.0), predictions, torch.zeros(3, 2)) == {"loss": 2.0}


def test_embed_episode_is_one_encoder_call_split_back():
    calls = []
    encoder = nn.Linear(3, 2)
    encoder.register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape))
    batch = episodes()
    support_z, query_z = embed_episode(encoder, batch.support_x, batch.query_x)
    assert calls == [torch.Size([18, 3])]
    torch.testing.assert_close(support_z, encoder(batch.support_x))
    torch.testing.assert_close(query_z, encoder(batch.query_x))


def test_an_episode_learners_training_step_is_cross_entropy_of_its_logits():
    learner, batch = NearestMean(nn.Linear(3, 3)), episodes()
    step = learner.training_step(batch)
    logits = learner.logits(batch.support_x, batch.support_y, batch.query_x)
    torch.testing.assert_close(step.loss, F.cross_entropy(logits.flatten(0, 1),
                                                          batch.query_y.flatten()))
    torch.testing.assert_close(learner.predict_batch(batch), logits.detach())
    torch.testing.assert_close(learner.predict(batch.support_x[0], batch.support_y[0],
                                               batch.query_x[0]), logits[0].detach())


def test_a_fitted_task_predicts_as_predict_does_and_keeps_embeddings():
    learner, batch = NearestMean(nn.Linear(3, 3)), episodes(1)
    task = learner.fit_task(batch.support_x[0], batch.support_y[0])
    assert sorted(task) == ["support_y", "support_z"]
    torch.testing.assert_close(learner.predict_fitted(task, batch.query_x[0]),
                               learner.predict(batch.support_x[0], batch.support_y[0],
                                               batch.query_x[0]))
    assert learner.explain_fitted(task, batch.query_x[0]) == {}  # no attention to show


def test_over_a_batch_norm_encoder_the_support_inputs_are_kept():
    learner = NearestMean(nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)))
    batch = episodes(1)
    task = learner.fit_task(batch.support_x[0], batch.support_y[0])
    assert sorted(task) == ["support_x", "support_y"]
    torch.testing.assert_close(learner.predict_fitted(task, batch.query_x[0]),
                               learner.predict(batch.support_x[0], batch.support_y[0],
                                               batch.query_x[0]))


def test_the_base_defaults_keep_the_support_set_and_predict_task_by_task():
    learner, batch = KeepsSupport(), episodes()
    task = learner.fit_task(batch.support_x[1], batch.support_y[1])
    torch.testing.assert_close(learner.predict_fitted(task, batch.query_x[1]),
                               batch.query_x[1].sum(-1, keepdim=True) + batch.support_x[1].sum())
    stacked = learner.predict_batch(batch)
    assert stacked.shape == (2, 5, 1)
    torch.testing.assert_close(stacked[0], learner.predict(batch.support_x[0],
                                                           batch.support_y[0], batch.query_x[0]))
    assert learner.encoder_and_head() is None and learner.backbone() is None
    assert learner.token_encoder() is None and learner.explain_fitted(task, batch.query_x[1]) == {}
    with pytest.raises(InputError, match="KeepsSupport has no attention to draw"):
        learner.attention_maps(batch.support_x[0], batch.support_y[0], batch.query_x[0])


def test_an_episode_learner_without_a_head_names_the_method_to_write():
    class Headless(EpisodeLearner):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Identity()

    batch = episodes()
    with pytest.raises(NotImplementedError, match=r"Headless has no head: expected it to "
                                                  r"implement logits_from_features"):
        Headless().training_step(batch)
    learner = NearestMean(nn.Identity())
    assert learner.encoder_and_head() == (learner.encoder, learner.logits_from_features)
