"""attnmeta.learners.inner_loop: gradient descent on the support loss as a pure function,
against closed forms on a linear model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attnmeta.learners.inner_loop import adam, descend, inner_sgd, sgd, support_gradient


def mse(prediction, target):
    return ((prediction - target) ** 2).mean()


def linear_task():
    torch.manual_seed(0)
    model = nn.Linear(3, 1, bias=False).double()
    x, y = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 1, dtype=torch.float64)
    return model, x, y


@pytest.mark.parametrize("under_vmap", [True, False])
def test_the_support_gradient_of_least_squares_is_its_closed_form(under_vmap):
    model, x, y = linear_task()
    w = torch.randn(1, 3, dtype=torch.float64)
    grad = support_gradient(model, {}, x, y, mse, under_vmap=under_vmap)({"weight": w})
    expected = 2 / 5 * (x @ w.T - y).T @ x  # d/dW mean((xW^T - y)^2)
    torch.testing.assert_close(grad["weight"], expected)


def test_inner_sgd_takes_the_steps_gradient_descent_takes():
    model, x, y = linear_task()
    w0, lr, calls = torch.randn(1, 3, dtype=torch.float64), 0.1, []
    adapted = inner_sgd(model, {"weight": w0}, {}, x, y, mse, {"weight": lr}, steps=3,
                        first_order=False, on_step=calls.append)
    w = w0.clone()
    for _ in range(3):
        w = w - lr * 2 / 5 * (x @ w.T - y).T @ x
    torch.testing.assert_close(adapted["weight"], w)
    assert calls == [1, 2, 3]


def test_second_order_meta_gradient_matches_finite_differences_and_first_order_drops_it():
    model, x, y = linear_task()
    lr = 0.3
    query_x, query_y = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 1, dtype=torch.float64)

    def meta_loss(w, first_order):
        adapted = inner_sgd(model, {"weight": w}, {}, x, y, mse, {"weight": lr}, steps=2,
                            first_order=first_order, under_vmap=False)
        return mse(query_x @ adapted["weight"].T, query_y)

    w = torch.randn(1, 3, dtype=torch.float64, requires_grad=True)
    (second,) = torch.autograd.grad(meta_loss(w, False), w)
    eps, numeric = 1e-6, torch.zeros(3, dtype=torch.float64)
    for i in range(3):
        step = torch.zeros(1, 3, dtype=torch.float64)
        step[0, i] = eps
        numeric[i] = (meta_loss(w.detach() + step, False) - meta_loss(w.detach() - step, False)) \
            / (2 * eps)
    torch.testing.assert_close(second[0], numeric, rtol=1e-6, atol=1e-8)
    (first,) = torch.autograd.grad(meta_loss(w, True), w)
    with torch.no_grad():  # FOMAML: the query gradient at the adapted weights, as is
        adapted = inner_sgd(model, {"weight": w}, {}, x, y, mse, {"weight": lr}, 2, True)
        expected = 2 / 4 * (query_x @ adapted["weight"].T - query_y).T @ query_x
    torch.testing.assert_close(first, expected)
    assert not torch.allclose(first, second)


def test_inner_sgd_runs_under_vmap_as_task_by_task():
    model, x, y = linear_task()
    ws = torch.randn(4, 1, 3, dtype=torch.float64)
    batched = torch.vmap(lambda w: inner_sgd(model, {"weight": w}, {}, x, y, mse,
                                             {"weight": 0.1}, 2, False)["weight"])(ws)
    for w, got in zip(ws, batched):
        expected = inner_sgd(model, {"weight": w}, {}, x, y, mse, {"weight": 0.1}, 2, False,
                             under_vmap=False)["weight"]
        torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_each_inner_optimizer_is_torch_optim_as_a_pure_function(name):
    """sgd and adam through descend take torch.optim's steps, leaving their input intact."""
    model, x, y = linear_task()
    w0 = torch.randn(1, 3, dtype=torch.float64)
    before = w0.clone()
    optimizer = sgd({"weight": 0.1}) if name == "sgd" else adam(0.1, betas=(0.9, 0.999))
    grad_fn = support_gradient(model, {}, x, y, mse, under_vmap=False)
    adapted = descend(grad_fn, {"weight": w0}, optimizer, steps=3, first_order=True)
    reference = w0.clone().requires_grad_()
    torch_optimizer = (torch.optim.SGD([reference], lr=0.1) if name == "sgd"
                       else torch.optim.Adam([reference], lr=0.1, betas=(0.9, 0.999)))
    for _ in range(3):
        torch_optimizer.zero_grad()
        mse(x @ reference.T, y).backward()
        torch_optimizer.step()
    torch.testing.assert_close(adapted["weight"], reference.detach(), rtol=1e-12, atol=1e-14)
    assert torch.equal(w0, before) and not torch.equal(adapted["weight"], w0)  # no in-place

