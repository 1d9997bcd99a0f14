"""attnmeta.speed.peers: the textbook Conv4, and each peer library's MAML meta-step against
a reference written as one unrolled graph, in float64 on a tiny model. The
speed harness's comparison on the Conv4 itself is tested in test_harness.py."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from attnmeta.speed.peers import (PEERS, MetaStep, PeerUnavailable, _StandIn, plain_loop,
                                  reference_conv4)
from attnmeta.tasks.episode import Episode

INNER_LR = 0.4


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()


def tiny_batch(tasks: int = 2) -> Episode:
    generator = torch.Generator().manual_seed(1)
    labels = torch.arange(3).repeat(tasks, 2)  # [T, 6]: 2 examples of each of 3 classes
    return Episode(torch.randn(tasks, 6, 4, generator=generator, dtype=torch.float64), labels,
                   torch.randn(tasks, 6, 4, generator=generator, dtype=torch.float64), labels)


def reference_meta_gradient(model: nn.Module, batch: Episode, steps: int, first_order: bool
                            ) -> list[torch.Tensor]:
    """d/dθ of the mean query loss after ``steps`` SGD steps on the support loss, as one
    graph over the whole batch (first order: the inner gradients are detached constants)."""
    names = [name for name, _ in model.named_parameters()]
    params = [p.detach().requires_grad_() for p in model.parameters()]

    def loss(weights, x, y):
        return F.cross_entropy(functional_call(model, dict(zip(names, weights)), (x,)), y)

    total = 0.0
    for t in range(batch.num_tasks):
        task = batch.task(t)
        fast = params
        for _ in range(steps):
            grads = torch.autograd.grad(loss(fast, task.support_x, task.support_y), fast,
                                        create_graph=True)
            fast = [w - INNER_LR * (g.detach() if first_order else g)
                    for w, g in zip(fast, grads)]
        total = total + loss(fast, task.query_x, task.query_y)
    return list(torch.autograd.grad(total / batch.num_tasks, params))


def meta_gradient_of(step: MetaStep, batch: Episode) -> list[torch.Tensor]:
    step.model.zero_grad(set_to_none=True)
    step.meta_gradient(batch)
    return [p.grad.clone() for p in step.model.parameters()]


def test_reference_conv4_is_the_textbook_network():
    model = reference_conv4(5, hidden=64)
    blocks = list(model.children())
    assert len(blocks) == 4 * 4 + 2
    for b in range(4):
        conv, norm, relu, pool = blocks[4 * b: 4 * b + 4]
        assert (conv.in_channels, conv.out_channels) == (1 if b == 0 else 64, 64)
        assert conv.kernel_size == (3, 3) and conv.padding == (1, 1)
        assert isinstance(norm, nn.BatchNorm2d) and not norm.track_running_stats
        assert isinstance(relu, nn.ReLU) and isinstance(pool, nn.MaxPool2d)
    assert isinstance(blocks[-2], nn.Flatten) and (blocks[-1].in_features,
                                                   blocks[-1].out_features) == (64, 5)
    # conv 1 + convs 2..4 + 4 BatchNorms (scale, shift) + the head
    expected = (9 * 64 + 64) + 3 * (9 * 64 * 64 + 64) + 4 * 2 * 64 + (64 * 5 + 5)
    assert sum(p.numel() for p in model.parameters()) == expected == 112_261
    assert model(torch.zeros(7, 1, 28, 28)).shape == (7, 5)  # 28 -> 14 -> 7 -> 3 -> 1
    assert not list(model.buffers())  # batch statistics only, in train and eval alike


@pytest.mark.parametrize("steps,first_order", [(1, False), (2, False), (2, True)])
def test_plain_loop_is_the_maml_meta_gradient(steps, first_order):
    model = tiny_model()
    before = [p.detach().clone() for p in model.parameters()]
    expected = reference_meta_gradient(model, tiny_batch(), steps, first_order)
    actual = meta_gradient_of(plain_loop(model, INNER_LR, steps, first_order), tiny_batch())
    for a, e in zip(actual, expected, strict=True):
        assert torch.allclose(a, e, rtol=1e-10, atol=1e-12)
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))  # not trained
    if first_order and steps == 2:  # the second-order terms are not zero here
        second = reference_meta_gradient(model, tiny_batch(), steps, False)
        assert not torch.allclose(actual[0], second[0])


@pytest.mark.parametrize("steps,first_order", [(1, False), (2, False), (2, True)])
def test_higher_is_the_maml_meta_gradient(steps, first_order):
    pytest.importorskip("higher")
    model = tiny_model()
    expected = reference_meta_gradient(model, tiny_batch(), steps, first_order)
    step = PEERS["higher"](model, INNER_LR, steps, first_order)
    assert step.name.startswith("higher ") and "  " not in step.name
    for a, e in zip(meta_gradient_of(step, tiny_batch()), expected, strict=True):
        assert torch.allclose(a, e, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("steps", [1, 2])
def test_torchopt_is_the_maml_meta_gradient_and_has_no_first_order_mode(steps):
    torchopt = pytest.importorskip("torchopt")
    model = tiny_model()
    before = [p.detach().clone() for p in model.parameters()]
    expected = reference_meta_gradient(model, tiny_batch(), steps, False)
    step = PEERS["torchopt"](model, INNER_LR, steps, False)
    assert step.name == f"torchopt {torchopt.__version__} MetaSGD"
    for a, e in zip(meta_gradient_of(step, tiny_batch()), expected, strict=True):
        assert torch.allclose(a, e, rtol=1e-10, atol=1e-12)
    # the inner steps are undone after each task: the model keeps its weights
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
    with pytest.raises(PeerUnavailable, match="no first-order mode"):
        PEERS["torchopt"](model, INNER_LR, steps, True)


def test_learn2learn_is_the_maml_meta_gradient_or_reported_missing():
    model = tiny_model()
    meta_path = list(sys.meta_path)
    try:
        step = PEERS["learn2learn"](model, INNER_LR, 2, False)
    except PeerUnavailable as reason:
        assert str(reason).startswith("learn2learn does not import (")
        assert sys.meta_path == meta_path  # the stand-in finder is gone again
        pytest.skip(str(reason))
    expected = reference_meta_gradient(model, tiny_batch(), 2, False)
    for a, e in zip(meta_gradient_of(step, tiny_batch()), expected, strict=True):
        assert torch.allclose(a, e, rtol=1e-10, atol=1e-12)


def test_peers_by_key_and_the_serial_fallback():
    assert list(PEERS) == ["plain_loop", "learn2learn", "higher", "torchopt"]
    assert PEERS["plain_loop"] is plain_loop
    calls = []
    step = MetaStep("x", nn.Linear(1, 1), lambda batch: calls.append("parallel"))
    step.on_one_thread(tiny_batch())
    step.serial_meta_gradient = lambda batch: calls.append("serial")
    step.on_one_thread(tiny_batch())
    assert calls == ["parallel", "serial"]


def test_stand_in_modules_offer_any_class_but_no_dunders():
    module = _StandIn("torchvision")
    made = module.transforms
    assert isinstance(made, type) and made.__name__ == "transforms"
    assert module.transforms is made  # the same class on each access
    made(1, 2, key=3)  # constructible with any arguments
    with pytest.raises(AttributeError):
        module.__wrapped__
