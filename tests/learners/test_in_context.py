"""The in-context learner: no gradient steps, permutation-invariant in the support set."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from attnmeta.learners import InContextLearner
from attnmeta.models import AttentiveNP
from attnmeta.tasks import SinusoidTasks


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
