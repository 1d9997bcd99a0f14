"""MAML's meta-gradients against a hand-unrolled ``torch.autograd.grad`` reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from attnmeta import kernels
from attnmeta.learners import MAML
from attnmeta.models import (MLP, BatchStatNorm2d, Conv4, MemoryAttentionRegressor,
                             VisionTransformer)
from attnmeta.tasks import Episode

TOL = dict(rtol=1e-9, atol=1e-11)


def regression_batch(tasks: int = 3, shots: int = 6, queries: int = 5, seed: int = 0) -> Episode:
    gen = torch.Generator().manual_seed(seed)
    sx = torch.randn(tasks, shots, 1, generator=gen, dtype=torch.float64)
    qx = torch.randn(tasks, queries, 1, generator=gen, dtype=torch.float64)
    amplitude = 1 + torch.rand(tasks, 1, 1, generator=gen, dtype=torch.float64)
    return Episode(sx, amplitude * torch.sin(sx), qx, amplitude * torch.sin(qx))


def image_batch(tasks: int = 2, n_way: int = 3, side: int = 16, seed: int = 0) -> Episode:
    gen = torch.Generator().manual_seed(seed)
    sx = torch.randn(tasks, n_way * 2, 1, side, side, generator=gen, dtype=torch.float64)
    qx = torch.randn(tasks, n_way * 2, 1, side, side, generator=gen, dtype=torch.float64)
    labels = torch.arange(n_way).repeat_interleave(2).expand(tasks, -1)
    return Episode(sx, labels, qx, labels)


def reference_meta_gradient(model: nn.Module, batch: Episode, inner_lr: float, steps: int,
                            loss_fn, first_order: bool = False) -> list[torch.Tensor]:
    """Hand-unrolled MAML: ``torch.autograd.grad(create_graph=True)`` per task, no torch.func,
    batch norm and max-pool as plain formulas / PyTorch's stock kernel (not the fast ones)."""
    with kernels.differentiable(vmap=True):  # no native kernel: the plain formulas
        return _reference_meta_gradient(model, batch, inner_lr, steps, loss_fn, first_order)


def _reference_meta_gradient(model, batch, inner_lr, steps, loss_fn, first_order):
    names = [n for n, _ in model.named_parameters()]
    meta_params = [p for _, p in model.named_parameters()]

    def forward(params, x):
        return functional_call(model, dict(zip(names, params)), (x,))

    query_losses = []
    for t in range(batch.num_tasks):
        task = batch.task(t)
        fast = meta_params
        for _ in range(steps):
            support_loss = loss_fn(forward(fast, task.support_x), task.support_y)
            grads = torch.autograd.grad(support_loss, fast, create_graph=not first_order)
            fast = [p - inner_lr * g for p, g in zip(fast, grads)]
        if first_order:  # FOMAML: the query gradient taken at the (detached) adapted weights
            fast = [p.detach().requires_grad_() for p in fast]
            query_loss = loss_fn(forward(fast, task.query_x), task.query_y)
            query_losses.append(torch.autograd.grad(query_loss, fast))
        else:
            query_losses.append(loss_fn(forward(fast, task.query_x), task.query_y))
    if first_order:
        return [torch.stack(g).mean(0) for g in zip(*query_losses)]
    return list(torch.autograd.grad(torch.stack(query_losses).mean(), meta_params))


def learner_meta_gradient(learner: MAML, batch: Episode) -> list[torch.Tensor]:
    learner.zero_grad()
    learner.meta_loss(batch).backward()
    return [p.grad.clone() for p in learner.model.parameters()]


def assert_all_close(actual, expected, **tol):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, **(tol or TOL))


def make_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return MLP(hidden=(8, 8)).double()


def make_conv(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return Conv4(in_channels=1, out_dim=3, hidden=4, image_size=16).double()


@pytest.mark.parametrize("strategy", ["loop", "vmap"])
@pytest.mark.parametrize("steps", [1, 3])
def test_second_order_mlp_matches_reference(steps, strategy):
    model, batch = make_mlp(), regression_batch()
    learner = MAML(model, inner_lr=0.1, inner_steps=steps, loss_fn=F.mse_loss, strategy=strategy)
    expected = reference_meta_gradient(model, batch, 0.1, steps, F.mse_loss)
    assert_all_close(learner_meta_gradient(learner, batch), expected)


@pytest.mark.parametrize("strategy", ["loop", "vmap"])
@pytest.mark.parametrize("steps", [1, 3])
def test_second_order_conv_batchnorm_matches_reference(steps, strategy):
    model, batch = make_conv(), image_batch()
    learner = MAML(model, inner_lr=0.3, inner_steps=steps, strategy=strategy)
    expected = reference_meta_gradient(model, batch, 0.3, steps, F.cross_entropy)
    assert_all_close(learner_meta_gradient(learner, batch), expected)


@pytest.mark.parametrize("strategy", ["loop", "vmap"])
def test_second_order_through_attention_and_layernorm(strategy):
    torch.manual_seed(0)
    model = MemoryAttentionRegressor(d_model=8, n_memory=4, n_heads=2).double()
    batch = regression_batch()
    learner = MAML(model, inner_lr=0.1, inner_steps=2, loss_fn=F.mse_loss, strategy=strategy)
    with kernels.differentiable(double_backward=True):  # the reference differentiates twice
        expected = reference_meta_gradient(model, batch, 0.1, 2, F.mse_loss)
    assert_all_close(learner_meta_gradient(learner, batch), expected)


@pytest.mark.parametrize("steps", [1, 3])
def test_second_order_through_vision_transformer(steps):
    """MAML over a ViT: second order through patch embedding, softmax attention and
    LayerNorm, equal to the hand-unrolled reference (the issue's seed example, working)."""
    torch.manual_seed(0)
    model = VisionTransformer(in_channels=1, out_dim=3, d_model=8, image_size=16,
                              patch_size=8, depth=2, n_heads=2).double()
    batch = image_batch()
    learner = MAML(model, inner_lr=0.3, inner_steps=steps)
    with kernels.differentiable(double_backward=True):
        expected = reference_meta_gradient(model, batch, 0.3, steps, F.cross_entropy)
        first = reference_meta_gradient(model, batch, 0.3, steps, F.cross_entropy,
                                        first_order=True)
    actual = learner_meta_gradient(learner, batch)
    assert_all_close(actual, expected)
    # Every parameter gets a meta-gradient, and the Hessian term is not negligible.
    assert all(g.abs().max() > 0 for g in actual)
    assert max((a - f).abs().max().item() for a, f in zip(actual, first)) > 1e-6


def test_second_order_differs_from_first_order():
    """The reference tests above would pass vacuously if the Hessian term were zero."""
    model, batch = make_mlp(), regression_batch()
    second = reference_meta_gradient(model, batch, 0.1, 2, F.mse_loss)
    first = reference_meta_gradient(model, batch, 0.1, 2, F.mse_loss, first_order=True)
    assert max((s - f).abs().max().item() for s, f in zip(second, first)) > 1e-4


@pytest.mark.parametrize("strategy", ["loop", "vmap"])
@pytest.mark.parametrize("make_model, make_batch, loss_fn", [
    (make_mlp, regression_batch, F.mse_loss), (make_conv, image_batch, F.cross_entropy)])
def test_first_order_is_query_gradient_at_adapted_params(strategy, make_model, make_batch, loss_fn):
    model, batch = make_model(), make_batch()
    learner = MAML(model, 0.2, inner_steps=3, first_order=True, loss_fn=loss_fn, strategy=strategy)
    expected = reference_meta_gradient(model, batch, 0.2, 3, loss_fn, first_order=True)
    assert_all_close(learner_meta_gradient(learner, batch), expected)


def test_vmap_equals_loop_loss_and_predictions():
    model, batch = make_conv(), image_batch(tasks=3)
    loop = MAML(model, 0.3, 2, strategy="loop")
    vmapped = MAML(model, 0.3, 2, strategy="vmap")
    loss_l, pred_l = loop.meta_loss_and_predictions(batch)
    loss_v, pred_v = vmapped.meta_loss_and_predictions(batch)
    torch.testing.assert_close(loss_v, loss_l, **TOL)
    torch.testing.assert_close(pred_v, pred_l, **TOL)
    torch.testing.assert_close(vmapped.predict_batch(batch, steps=4),
                               loop.predict_batch(batch, steps=4), **TOL)


def test_batchstatnorm_matches_native_batch_norm_forward():
    x = torch.randn(5, 3, 4, 4, dtype=torch.float64)
    norm = BatchStatNorm2d(3).double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2)
        norm.bias.uniform_(-1, 1)
    expected = F.batch_norm(x, None, None, norm.weight, norm.bias, training=True, eps=norm.eps)
    torch.testing.assert_close(norm(x), expected, **TOL)


def test_adapt_takes_the_written_sgd_steps():
    model, batch = make_mlp(), regression_batch()
    learner = MAML(model, inner_lr=0.05, inner_steps=1, loss_fn=F.mse_loss)
    task = batch.task(0)
    adapted = learner.adapt(task.support_x, task.support_y, steps=2)
    fast = {n: p.detach().clone().requires_grad_() for n, p in model.named_parameters()}
    for _ in range(2):
        loss = F.mse_loss(functional_call(model, fast, (task.support_x,)), task.support_y)
        grads = torch.autograd.grad(loss, list(fast.values()))
        fast = {n: (p - 0.05 * g).detach().requires_grad_() for (n, p), g in zip(fast.items(), grads)}
    for name in fast:
        torch.testing.assert_close(adapted[name], fast[name].detach(), **TOL)
    assert not any(t.requires_grad for t in adapted.values())


def test_meta_sgd_learns_per_parameter_rates():
    model, batch = make_mlp(), regression_batch()
    learner = MAML(model, 0.1, inner_steps=1, loss_fn=F.mse_loss, learn_inner_lr=True)
    assert len(learner.inner_lrs) == len(list(model.parameters()))
    learner.meta_loss(batch).backward()
    # d(query loss)/d(alpha) = -grad_query(phi) * grad_support(theta), elementwise, task mean.
    names = [n for n, _ in model.named_parameters()]
    expected = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for t in range(batch.num_tasks):
        task = batch.task(t)
        params = dict(model.named_parameters())
        support_loss = F.mse_loss(functional_call(model, params, (task.support_x,)), task.support_y)
        g_support = torch.autograd.grad(support_loss, list(params.values()))
        fast = {n: (params[n] - 0.1 * g).detach().requires_grad_() for n, g in zip(names, g_support)}
        query_loss = F.mse_loss(functional_call(model, fast, (task.query_x,)), task.query_y)
        g_query = torch.autograd.grad(query_loss, list(fast.values()))
        for n, gs, gq in zip(names, g_support, g_query):
            expected[n] += -gs * gq / batch.num_tasks
    for n in names:
        torch.testing.assert_close(learner.inner_lrs[n.replace(".", "/")].grad, expected[n], **TOL)


def test_anil_adapts_only_the_head():
    model, batch = make_mlp(), regression_batch()
    learner = MAML(model, 0.1, inner_steps=2, loss_fn=F.mse_loss, adapt_only=["head."])
    assert learner.adapted_names == ["head.weight", "head.bias"]
    task = batch.task(0)
    adapted = learner.adapt(task.support_x, task.support_y)
    for name, p in model.named_parameters():
        changed = not torch.equal(adapted[name], p.detach())
        assert changed == name.startswith("head.")
    # Its meta-gradient equals the reference with the body held fixed in the inner loop.
    names = [n for n, _ in model.named_parameters()]
    losses = []
    for t in range(batch.num_tasks):
        task = batch.task(t)
        fast = dict(model.named_parameters())
        for _ in range(2):
            loss = F.mse_loss(functional_call(model, fast, (task.support_x,)), task.support_y)
            g_w, g_b = torch.autograd.grad(loss, [fast["head.weight"], fast["head.bias"]],
                                           create_graph=True)
            fast = {**fast, "head.weight": fast["head.weight"] - 0.1 * g_w,
                    "head.bias": fast["head.bias"] - 0.1 * g_b}
        losses.append(F.mse_loss(functional_call(model, fast, (task.query_x,)), task.query_y))
    expected = torch.autograd.grad(torch.stack(losses).mean(), list(model.parameters()))
    assert_all_close(learner_meta_gradient(learner, batch), list(expected))
    assert names[-2:] == ["head.weight", "head.bias"]


def test_zero_inner_steps_is_plain_training_on_the_query_set():
    model, batch = make_mlp(), regression_batch()
    learner = MAML(model, 0.1, inner_steps=0, loss_fn=F.mse_loss)
    expected = torch.stack([F.mse_loss(model(batch.query_x[t]), batch.query_y[t])
                            for t in range(batch.num_tasks)]).mean()
    torch.testing.assert_close(learner.meta_loss(batch), expected, **TOL)


def test_bad_arguments_have_clear_errors():
    with pytest.raises(ValueError, match="strategy='gpu'"):
        MAML(make_mlp(), 0.1, strategy="gpu")
    with pytest.raises(ValueError, match=r"adapt_only=\['decoder.'\] matches none"):
        MAML(make_mlp(), 0.1, adapt_only=["decoder."])
    with pytest.raises(ValueError, match="inner_steps=-1"):
        MAML(make_mlp(), 0.1, inner_steps=-1)


def test_plain_layer_norm_matches_native_forward():
    from attnmeta.norm import LayerNorm

    norm = LayerNorm(6).double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2)
        norm.bias.uniform_(-1, 1)
    x = torch.randn(3, 4, 6, dtype=torch.float64)
    torch.testing.assert_close(norm(x), F.layer_norm(x, (6,), norm.weight, norm.bias, norm.eps),
                               **TOL)
