"""What the gradient learners share (GradientLearner) and what every learner declares."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnmeta.learners import (FEAT, MAML, GradientLearner, InContextClassifier, MatchingNet,
                               MetaLearner, ProtoNet, Reptile, class_count)
from attnmeta.models import MLP, VisionTransformer
from attnmeta.rl import PolicyGradientMAML
from attnmeta.tasks import SinusoidTasks


def test_capabilities_are_declared_per_class():
    assert issubclass(Reptile, GradientLearner) and not issubclass(Reptile, MAML)
    assert issubclass(PolicyGradientMAML, GradientLearner)
    for cls in (MAML, Reptile):
        assert cls.adapts_by_gradient and cls.needs_head
    for cls in (ProtoNet, MatchingNet, FEAT, InContextClassifier):
        assert not cls.adapts_by_gradient and not cls.needs_head
    assert not MetaLearner.adapts_by_gradient and not MetaLearner.needs_head
    assert not PolicyGradientMAML.needs_head  # a policy has no n_way head


@pytest.mark.parametrize("cls", [MAML, Reptile])
def test_predict_defaults_to_eval_steps(cls):
    torch.manual_seed(0)
    learner = cls(MLP(hidden=(8,)).double(), 0.05, inner_steps=1, loss_fn=F.mse_loss,
                  eval_steps=4)
    assert cls(MLP(), 0.1, inner_steps=2).eval_steps == 2  # default: inner_steps
    batch = SinusoidTasks(k_shot=5, q_query=5).batch(0, 2)
    batch = type(batch)(*(t.double() for t in (batch.support_x, batch.support_y,
                                               batch.query_x, batch.query_y)))
    task = batch.task(0)
    default = learner.predict(task.support_x, task.support_y, task.query_x)
    torch.testing.assert_close(default, learner.predict(task.support_x, task.support_y,
                                                        task.query_x, steps=4))
    assert not torch.allclose(default, learner.predict(task.support_x, task.support_y,
                                                       task.query_x, steps=1))
    torch.testing.assert_close(learner.predict_batch(batch), learner.predict_batch(batch, steps=4))
    with pytest.raises(ValueError, match="eval_steps=-1"):
        cls(MLP(), 0.1, eval_steps=-1)


def test_attention_maps_are_a_capability_with_a_one_line_refusal():
    assert ProtoNet(torch.nn.Identity()).attention_map_names() == ()
    with pytest.raises(ValueError, match=r"^ProtoNet has no attention to draw: expected "
                                         r"MatchingNet, FEAT, InContextClassifier"):
        ProtoNet(torch.nn.Identity()).attention_maps(torch.zeros(2, 3), torch.tensor([0, 1]),
                                                     torch.zeros(2, 3))
    mlp = MAML(MLP(), 0.1)
    assert mlp.attention_map_names() == ()
    with pytest.raises(ValueError, match=r"^MAML has no attention to draw"):
        mlp.attention_maps(torch.zeros(2, 1), torch.zeros(2, 1), torch.zeros(2, 1))
    vit = Reptile(VisionTransformer(1, 2, d_model=8, image_size=8, patch_size=4, depth=1,
                                    n_heads=2), 0.1, inner_steps=1)
    assert vit.attention_map_names() == ("patch_attention",)
    maps = vit.attention_maps(torch.randn(2, 1, 8, 8), torch.tensor([0, 1]),
                              torch.randn(3, 1, 8, 8))
    assert maps["patch_attention"].shape == (3, 2, 2)
    assert MatchingNet(torch.nn.Identity()).attention_map_names() == ("query_support",)


def test_class_count_is_the_largest_label_plus_one():
    assert class_count(torch.tensor([[0, 2, 1, 2]])) == 3
