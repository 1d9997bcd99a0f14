"""MAML's ``strategy="compiled"`` (``torch.compile`` over each task's meta-gradient) against the
hand-unrolled reference of ``test_maml.py``, in float64; and what it refuses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnmeta.learners import MAML
from attnmeta.models import Conv4
from attnmeta.train import accumulate_meta_gradient

from test_maml import (assert_all_close, image_batch, learner_meta_gradient,
                                      make_conv, make_mlp, reference_meta_gradient,
                                      regression_batch)


@pytest.mark.parametrize("first_order", [False, True])
def test_compiled_mlp_matches_reference(first_order):
    model, batch = make_mlp(), regression_batch()
    learner = MAML(model, inner_lr=0.1, inner_steps=2, loss_fn=F.mse_loss,
                   first_order=first_order, strategy="compiled")
    expected = reference_meta_gradient(model, batch, 0.1, 2, F.mse_loss, first_order)
    assert_all_close(learner_meta_gradient(learner, batch), expected)


def test_compiled_conv_batchnorm_matches_reference():
    model, batch = make_conv(), image_batch()
    learner = MAML(model, inner_lr=0.3, inner_steps=1, strategy="compiled")
    expected = reference_meta_gradient(model, batch, 0.3, 1, F.cross_entropy)
    assert_all_close(learner_meta_gradient(learner, batch), expected)


def test_compiled_meta_sgd_and_anil_equal_the_loop():
    """Learned step sizes (their own gradients) and parameters that are meta-learned but not
    adapted (ANIL's body) get the same gradients as the loop's ordinary backward."""
    batch = regression_batch()
    grads = {}
    for strategy in ("loop", "compiled"):
        learner = MAML(make_mlp(), inner_lr=0.1, inner_steps=2, loss_fn=F.mse_loss,
                       learn_inner_lr=True, adapt_only=["head."], strategy=strategy)
        learner.zero_grad()
        (0.5 * learner.meta_loss(batch)).backward()  # a scaled loss scales the delivered grads
        grads[strategy] = {n: p.grad.clone() for n, p in learner.named_parameters()}
    assert set(grads["loop"]) == set(grads["compiled"])
    assert any(n.startswith("inner_lrs.") for n in grads["loop"])
    for name, expected in grads["loop"].items():
        torch.testing.assert_close(grads["compiled"][name], expected, rtol=1e-9, atol=1e-11)


def test_compiled_in_the_training_loop_equals_the_loop_with_metrics():
    batch = regression_batch(tasks=4)
    results = {}
    for strategy in ("loop", "compiled"):
        learner = MAML(make_mlp(), inner_lr=0.1, inner_steps=1, loss_fn=F.mse_loss,
                       strategy=strategy)
        metrics = accumulate_meta_gradient(learner, batch, backward_chunk=2, step=0)
        results[strategy] = (metrics, [p.grad.clone() for p in learner.parameters()])
    assert results["compiled"][0] == pytest.approx(results["loop"][0], rel=1e-9)
    assert_all_close(results["compiled"][1], results["loop"][1])


def test_compiled_refuses_running_statistics():
    with pytest.raises(ValueError, match="strategy='compiled': expected a model without buffers"):
        MAML(Conv4(1, 3, hidden=4, image_size=16, norm="running"), 0.1, strategy="compiled")


def test_compiled_proto_maml_matches_its_reference():
    """Proto-MAML's prototype head under the compiled meta-gradient: the hand-written
    reference of test_proto_maml.py (the head's own meta-gradient is zero: it is replaced)."""
    from test_proto_maml import (classification_batch, make_classifier_mlp,
                                 reference_proto_maml_gradient)

    model, batch = make_classifier_mlp(), classification_batch()
    learner = MAML(model, 0.3, inner_steps=2, prototype_head="head", strategy="compiled")
    learner.zero_grad()
    learner.meta_loss(batch).backward()
    actual = [p.grad for p in model.parameters()]
    assert_all_close(actual, reference_proto_maml_gradient(model, batch, 0.3, 2))
