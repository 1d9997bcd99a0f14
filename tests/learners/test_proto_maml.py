"""Proto-MAML (MAML's ``prototype_head``): the head starts each task at the support
prototypes; its first logits against ProtoNet's, its meta-gradient against a hand-written
reference with the features computed by the body alone."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from attnmeta import kernels
from attnmeta.learners import MAML, ProtoNet
from attnmeta.models import MLP, Conv4, VisionTransformer

from test_maml import TOL, assert_all_close, image_batch


def learner_meta_gradient(learner: MAML, batch) -> list[torch.Tensor]:
    """The meta-gradient of every model parameter (zeros where none reaches it: the
    meta-learned head, which Proto-MAML replaces in every task)."""
    learner.zero_grad()
    learner.meta_loss(batch).backward()
    return [torch.zeros_like(p) if p.grad is None else p.grad.clone()
            for p in learner.model.parameters()]


def classification_batch(tasks: int = 3, n_way: int = 3, shots: int = 2, queries: int = 2,
                         seed: int = 0):
    from attnmeta.tasks import Episode

    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n_way).repeat_interleave(shots).expand(tasks, -1)
    query_labels = torch.arange(n_way).repeat_interleave(queries).expand(tasks, -1)
    sx = torch.randn(tasks, n_way * shots, 4, generator=gen, dtype=torch.float64)
    qx = torch.randn(tasks, n_way * queries, 4, generator=gen, dtype=torch.float64)
    return Episode(sx, labels, qx, query_labels)


def make_classifier_mlp(seed: int = 0) -> MLP:
    torch.manual_seed(seed)
    return MLP(in_dim=4, hidden=(6, 5), out_dim=3).double()


def test_first_logits_are_protonet_distances_up_to_a_per_query_constant():
    """With no inner step, logits = 2 f.c_k - |c_k|^2 = -|f - c_k|^2 + |f|^2: ProtoNet's
    squared-Euclidean logits shifted by each query's own |f|^2 (same softmax)."""
    model, batch = make_classifier_mlp(), classification_batch()
    learner = MAML(model, 0.1, inner_steps=0, prototype_head="head")
    task = batch.task(0)
    logits = learner.predict(task.support_x, task.support_y, task.query_x, steps=0)
    features = model.body  # the MLP's body: what its head reads
    protonet = ProtoNet(features)
    expected = protonet.predict(task.support_x, task.support_y, task.query_x)
    query_features = features(task.query_x)
    torch.testing.assert_close(logits - (query_features ** 2).sum(-1, keepdim=True),
                               expected, **TOL)
    torch.testing.assert_close(logits.softmax(-1), expected.softmax(-1), **TOL)


def reference_proto_maml_loss(model: MLP, meta: dict, batch, inner_lr: float, steps: int):
    """Hand-written Proto-MAML meta-loss: features from ``model.body`` directly, prototypes
    by a loop over classes, the head set to (2c, -|c|^2), then ``steps`` of SGD on every
    weight with the head a variable of its own (the partial gradient: a pure function of
    body and head as separate arguments)."""

    def loss_at(body: dict, head_w, head_b, x, y):
        return F.cross_entropy(functional_call(model, {**body, "head.weight": head_w,
                                                       "head.bias": head_b}, (x,)), y)

    grad_all = torch.func.grad(loss_at, argnums=(0, 1, 2))
    losses = []
    for t in range(batch.num_tasks):
        task = batch.task(t)
        body = {n: p for n, p in meta.items() if n.startswith("body.")}
        features = functional_call(model.body, {n.removeprefix("body."): p
                                                for n, p in body.items()}, (task.support_x,))
        prototypes = torch.stack([features[task.support_y == k].mean(0) for k in range(3)])
        head_w, head_b = 2 * prototypes, -(prototypes * prototypes).sum(1)
        for _ in range(steps):
            g_body, g_w, g_b = grad_all(body, head_w, head_b, task.support_x, task.support_y)
            body = {n: p - inner_lr * g_body[n] for n, p in body.items()}
            head_w, head_b = head_w - inner_lr * g_w, head_b - inner_lr * g_b
        losses.append(loss_at(body, head_w, head_b, task.query_x, task.query_y))
    return torch.stack(losses).mean()


def reference_proto_maml_gradient(model: MLP, batch, inner_lr: float, steps: int):
    meta = dict(model.named_parameters())
    loss = reference_proto_maml_loss(model, meta, batch, inner_lr, steps)
    return list(torch.autograd.grad(loss, list(meta.values()), allow_unused=True,
                                    materialize_grads=True))


@pytest.mark.parametrize("strategy", ["loop", "vmap"])
@pytest.mark.parametrize("steps", [1, 2])
def test_meta_gradient_matches_the_hand_written_reference(steps, strategy):
    model, batch = make_classifier_mlp(), classification_batch()
    learner = MAML(model, 0.3, inner_steps=steps, prototype_head="head", strategy=strategy)
    expected = reference_proto_maml_gradient(model, batch, 0.3, steps)
    actual = learner_meta_gradient(learner, batch)
    assert_all_close(actual, expected)
    # The meta-learned head is replaced in every task, so it gets no meta-gradient; the
    # body gets one through the prototypes as well as through the inner loop.
    named = dict(zip([n for n, _ in model.named_parameters()], actual))
    assert named["head.weight"].abs().max() == 0 and named["head.bias"].abs().max() == 0
    assert all(g.abs().max() > 0 for n, g in named.items() if n.startswith("body."))


def test_meta_gradient_matches_finite_differences():
    """Central differences of the learner's own meta-loss, in float64, on every body
    weight: no autograd path is trusted."""
    model, batch = make_classifier_mlp(), classification_batch()
    learner = MAML(model, 0.3, inner_steps=2, prototype_head="head")
    gradient = learner_meta_gradient(learner, batch)
    eps = 1e-6
    for (name, p), g in zip(model.named_parameters(), gradient):
        if not name.startswith("body."):
            continue
        flat, expected = p.data.view(-1), torch.empty(p.numel(), dtype=p.dtype)
        for i in range(p.numel()):
            flat[i] += eps
            up = learner.meta_loss(batch).item()
            flat[i] -= 2 * eps
            down = learner.meta_loss(batch).item()
            flat[i] += eps
            expected[i] = (up - down) / (2 * eps)
        torch.testing.assert_close(g.view(-1), expected, rtol=1e-5, atol=1e-8)


def test_the_prototype_path_carries_meta_gradient():
    """The reference above would pass vacuously if the prototypes' gradient were zero: the
    meta-gradient with the initial head detached differs."""
    model, batch = make_classifier_mlp(), classification_batch()
    learner = MAML(model, 0.3, inner_steps=1, prototype_head="head")
    with_path = learner_meta_gradient(learner, batch)
    start = learner._task_start

    def detached_start(params, frozen, support_x, support_y):
        started = start(params, frozen, support_x, support_y)
        return {n: (p.detach() if n.startswith("head.") else p) for n, p in started.items()}

    learner._task_start = detached_start
    without_path = learner_meta_gradient(learner, batch)
    assert max((a - b).abs().max().item() for a, b in zip(with_path, without_path)) > 1e-6


def test_vision_transformer_head_is_set_from_its_cls_features():
    """Over the ViT (head ``encoder.head``): the first logits equal 2 f.c - |c|^2 with f the
    transformer's [CLS] features (its forward with out_dim=0, same weights)."""
    torch.manual_seed(0)
    model = VisionTransformer(in_channels=1, out_dim=3, d_model=8, image_size=16,
                              patch_size=8, depth=2, n_heads=2).double()
    features = VisionTransformer(in_channels=1, out_dim=0, d_model=8, image_size=16,
                                 patch_size=8, depth=2, n_heads=2).double()
    features.load_state_dict({n: p for n, p in model.state_dict().items()
                              if not n.startswith("encoder.head.")})
    batch = image_batch(n_way=3)
    task = batch.task(0)
    learner = MAML(model, 0.3, inner_steps=1, prototype_head="encoder.head")
    logits = learner.predict(task.support_x, task.support_y, task.query_x, steps=0)
    support, query = features(task.support_x), features(task.query_x)
    prototypes = torch.stack([support[task.support_y == k].mean(0) for k in range(3)])
    torch.testing.assert_close(logits, 2 * query @ prototypes.T - (prototypes ** 2).sum(1),
                               **TOL)
    # and training through it equals the loop under vmap
    vmapped = MAML(model, 0.3, inner_steps=1, prototype_head="encoder.head", strategy="vmap")
    with kernels.differentiable(double_backward=True):
        assert_all_close(learner_meta_gradient(vmapped, batch),
                         learner_meta_gradient(learner, batch))


def test_bad_prototype_heads_have_clear_errors():
    with pytest.raises(ValueError, match=r"prototype_head='decoder': expected the name of"):
        MAML(make_classifier_mlp(), 0.1, prototype_head="decoder")
    with pytest.raises(ValueError, match=r"prototype_head='head': \['head.weight', "
                                         r"'head.bias'\] not adapted"):
        MAML(make_classifier_mlp(), 0.1, prototype_head="head", adapt_only=["body."])
    conv = Conv4(in_channels=1, out_dim=3, hidden=4, image_size=16)
    with pytest.raises(ValueError, match="prototype_head='features'"):
        MAML(conv, 0.1, prototype_head="features")
