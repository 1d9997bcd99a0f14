"""Reptile's update equals θ + ε (mean_t φ_t − θ) with φ_t from plain SGD."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from attnmeta.learners import Reptile
from attnmeta.models import MLP, VisionTransformer
from attnmeta.tasks import Episode, SinusoidTasks
from attnmeta.train import meta_train


def sgd_adapted(model, task: Episode, lr: float, steps: int,
                loss_fn=F.mse_loss) -> dict[str, torch.Tensor]:
    """Reference inner loop: a deep copy of the model trained with torch.optim.SGD."""
    import copy

    clone = copy.deepcopy(model)
    optimizer = torch.optim.SGD(clone.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        loss_fn(clone(task.support_x), task.support_y).backward()
        optimizer.step()
    return {n: p.detach() for n, p in clone.named_parameters()}


def test_reptile_step_is_the_reptile_formula():
    torch.manual_seed(0)
    model = MLP(hidden=(8, 8)).double()
    learner = Reptile(model, inner_lr=0.02, inner_steps=3, loss_fn=F.mse_loss)
    batch = SinusoidTasks(k_shot=5, q_query=5).batch(0, 4)
    batch = Episode(*(t.double() for t in (batch.support_x, batch.support_y,
                                           batch.query_x, batch.query_y)))
    theta = {n: p.detach().clone() for n, p in model.named_parameters()}
    adapted = [sgd_adapted(model, batch.task(t), 0.02, 3) for t in range(batch.num_tasks)]
    epsilon = 0.5
    meta_train(learner, iter([batch]), torch.optim.SGD(learner.parameters(), lr=epsilon),
               steps=1, progress=False)
    for name, p in model.named_parameters():
        phi_mean = torch.stack([a[name] for a in adapted]).mean(0)
        expected = theta[name] + epsilon * (phi_mean - theta[name])
        torch.testing.assert_close(p.detach(), expected, rtol=1e-10, atol=1e-12)
        assert not torch.equal(p.detach(), theta[name])  # the step moved every parameter


def test_reptile_over_a_vision_transformer_is_the_reptile_formula():
    torch.manual_seed(0)
    model = VisionTransformer(in_channels=1, out_dim=3, d_model=8, image_size=8, patch_size=4,
                              depth=2, n_heads=2).double()
    learner = Reptile(model, inner_lr=0.1, inner_steps=2)
    gen = torch.Generator().manual_seed(1)
    labels = torch.arange(3).repeat(2).expand(2, -1)
    batch = Episode(torch.randn(2, 6, 1, 8, 8, generator=gen, dtype=torch.float64), labels,
                    torch.randn(2, 6, 1, 8, 8, generator=gen, dtype=torch.float64), labels)
    theta = {n: p.detach().clone() for n, p in model.named_parameters()}
    adapted = [sgd_adapted(model, batch.task(t), 0.1, 2, F.cross_entropy) for t in range(2)]
    meta_train(learner, iter([batch]), torch.optim.SGD(learner.parameters(), lr=1.0),
               steps=1, progress=False)
    for name, p in model.named_parameters():
        expected = torch.stack([a[name] for a in adapted]).mean(0)  # ε = 1: θ ← mean φ
        torch.testing.assert_close(p.detach(), expected, rtol=1e-10, atol=1e-12)
        # Every parameter moves but the key biases: q·b_k shifts a whole softmax row by a
        # constant, so their gradient is exactly zero.
        assert torch.equal(p.detach(), theta[name]) == name.endswith("w_k.bias"), name


def test_inner_adam_matches_torch_optim_adam_with_beta1_zero():
    import copy

    torch.manual_seed(0)
    model = MLP(hidden=(8, 8)).double()
    learner = Reptile(model, inner_lr=0.01, inner_steps=4, loss_fn=F.mse_loss,
                      inner_optimizer="adam")
    batch = SinusoidTasks(k_shot=5, q_query=5).batch(0, 1)
    task = Episode(*(t[0].double() for t in (batch.support_x, batch.support_y,
                                              batch.query_x, batch.query_y)))
    adapted = learner.adapt(task.support_x, task.support_y)
    reference = copy.deepcopy(model)
    optimizer = torch.optim.Adam(reference.parameters(), lr=0.01, betas=(0.0, 0.999))
    for _ in range(4):
        optimizer.zero_grad()
        F.mse_loss(reference(task.support_x), task.support_y).backward()
        optimizer.step()
    for name, p in reference.named_parameters():
        torch.testing.assert_close(adapted[name], p.detach(), rtol=1e-10, atol=1e-12)
        assert not torch.equal(adapted[name], dict(model.named_parameters())[name].detach())


def test_unknown_inner_optimizer_is_refused():
    import pytest

    with pytest.raises(ValueError, match="inner_optimizer='rmsprop': expected"):
        Reptile(MLP(), 0.1, inner_optimizer="rmsprop")
