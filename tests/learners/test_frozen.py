"""attnmeta.learners.frozen: a learner over features a frozen encoder computes once."""

from __future__ import annotations

import torch
from torch import nn

from attnmeta.learners.frozen import EMBED_BATCH, FrozenFeatureLearner
from attnmeta.learners.protonet import ProtoNet


def frozen_protonet():
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    return FrozenFeatureLearner(encoder, ProtoNet(nn.Identity())), encoder


def test_the_frozen_encoder_is_never_trained_and_stays_in_eval_mode():
    learner, encoder = frozen_protonet()
    learner.train()
    assert learner.training and not encoder.training
    assert not any(p.requires_grad for p in encoder.parameters())
    assert learner.display_name == f"{ProtoNet.display_name} (frozen features)"
    assert learner.adapts_by_gradient is False and learner.needs_head is False


def test_embed_runs_in_chunks_and_equals_one_eval_call():
    learner, encoder = frozen_protonet()
    sizes = []
    encoder.register_forward_hook(lambda m, inputs, out: sizes.append(len(inputs[0])))
    x = torch.randn(2 * EMBED_BATCH + 3, 3)
    features = learner.embed(x)
    assert sizes == [EMBED_BATCH, EMBED_BATCH, 3] and not features.requires_grad
    with torch.no_grad():
        torch.testing.assert_close(features, encoder.eval()(x))


def test_fitting_on_raw_inputs_equals_the_inner_learner_on_features():
    learner, encoder = frozen_protonet()
    support_x, support_y = torch.randn(6, 3), torch.tensor([0, 0, 1, 1, 2, 2])
    query_x = torch.randn(4, 3)
    task = learner.fit_task(support_x, support_y)
    with torch.no_grad():
        expected = learner.learner.predict(encoder(support_x), support_y, encoder(query_x))
    torch.testing.assert_close(learner.predict_fitted(task, query_x), expected)
    torch.testing.assert_close(task["support_z"], learner.embed(support_x))
    assert learner.encoder_and_head() == (encoder, learner.learner.logits)
