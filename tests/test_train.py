"""The shared training loop (the evaluation statistics: test_metrics.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnmeta.learners import MAML
from attnmeta.models import MLP
from attnmeta.tasks import SinusoidTasks
from attnmeta.train import NonFiniteLossError, meta_train


def batches(tasks: SinusoidTasks, start: int = 0):
    step = start
    while True:
        yield tasks.batch(step, 4)
        step += 1


def test_meta_training_reduces_loss_and_logs():
    torch.manual_seed(0)
    learner = MAML(MLP(hidden=(20, 20)), 0.01, 1, loss_fn=F.mse_loss, strategy="vmap")
    # One fixed sine (a degenerate family) so that 200 steps must fit it well.
    tasks = SinusoidTasks(k_shot=5, q_query=5, amplitude_range=(2.0, 2.0), phase_range=(0.0, 0.0))
    logged = []
    history = meta_train(learner, batches(tasks), torch.optim.Adam(learner.parameters(), 3e-3),
                         steps=200, log_every=50, progress=False,
                         on_log=lambda step, m: logged.append(step))
    assert logged == [50, 100, 150, 200]
    assert [h["step"] for h in history] == logged
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]


def test_resuming_from_a_step_reproduces_the_uninterrupted_run():
    tasks = SinusoidTasks(k_shot=5, q_query=5)

    def run(split_at: int | None):
        torch.manual_seed(0)
        learner = MAML(MLP(hidden=(8,)), 0.01, 1, loss_fn=F.mse_loss)
        optimizer = torch.optim.Adam(learner.parameters(), 1e-2)
        if split_at is None:
            meta_train(learner, batches(tasks), optimizer, steps=6, progress=False)
        else:
            meta_train(learner, batches(tasks), optimizer, steps=split_at, progress=False)
            state = {"model": learner.state_dict(), "optim": optimizer.state_dict()}
            learner.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optim"])
            meta_train(learner, batches(tasks, start=split_at), optimizer, steps=6,
                       start_step=split_at, progress=False)
        return [p.detach().clone() for p in learner.parameters()]

    for a, b in zip(run(None), run(3)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_nan_loss_stops_with_a_clear_error_and_leaves_parameters():
    learner = MAML(MLP(hidden=(4,)), 0.01, 1, loss_fn=F.mse_loss)
    before = [p.detach().clone() for p in learner.parameters()]
    batch = SinusoidTasks(k_shot=3, q_query=3).batch(0, 2)
    batch.query_y[0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match="meta-loss is nan at step 0"):
        meta_train(learner, iter([batch]), torch.optim.SGD(learner.parameters(), 0.1), steps=1,
                   progress=False)
    for p, q in zip(learner.parameters(), before):
        assert torch.equal(p.detach(), q)


@pytest.mark.parametrize("chunk", [1, 2])
def test_backward_in_chunks_gives_the_same_meta_gradient(chunk):
    """Second-order MAML over 4 tasks in chunks of ``chunk``: the same parameters after a
    step as one backward over the whole meta-batch (float64), and the same mean metrics."""
    from attnmeta.tasks import Episode

    batch = SinusoidTasks(k_shot=5, q_query=5).batch(0, 4)
    batch = Episode(*(t.double() for t in (batch.support_x, batch.support_y,
                                           batch.query_x, batch.query_y)))
    results = []
    for backward_chunk in (0, chunk):
        torch.manual_seed(0)
        learner = MAML(MLP(hidden=(8, 8)).double(), 0.1, 2, loss_fn=F.mse_loss)
        history = meta_train(learner, iter([batch]), torch.optim.SGD(learner.parameters(), lr=0.1),
                             steps=1, log_every=1, progress=False, backward_chunk=backward_chunk)
        results.append(([p.detach() for p in learner.parameters()], history[0]["loss"]))
    (whole, whole_loss), (chunked, chunked_loss) = results
    for a, b in zip(whole, chunked):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    assert chunked_loss == pytest.approx(whole_loss, rel=1e-12)


def conv_episode_batch(tasks: int = 4):
    from attnmeta.tasks import Episode

    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat_interleave(2).expand(tasks, -1)
    return Episode(torch.randn(tasks, 6, 1, 28, 28, generator=gen, dtype=torch.float64), labels,
                   torch.randn(tasks, 6, 1, 28, 28, generator=gen, dtype=torch.float64), labels)


@pytest.mark.parametrize("first_order", [False, True])
def test_worker_threads_give_the_serial_meta_gradient_deterministically(first_order):
    """train.workers=2 on second-order MAML over Conv4 (batch norm, max-pool): the same
    meta-gradient and metrics as the serial loop (float64), identical in two runs."""
    from attnmeta.models import Conv4
    from attnmeta.train import accumulate_meta_gradient

    batch = conv_episode_batch()
    torch.manual_seed(0)
    learner = MAML(Conv4(out_dim=3, hidden=8).double(), 0.3, 2, first_order=first_order)
    threads, runs = torch.get_num_threads(), []
    for workers in (1, 2, 2):
        learner.zero_grad(set_to_none=True)
        metrics = accumulate_meta_gradient(learner, batch, backward_chunk=1, step=0,
                                           workers=workers)
        runs.append(([p.grad.clone() for p in learner.parameters()], metrics))
    (serial, serial_metrics), (threaded, threaded_metrics), (again, _) = runs
    for a, b, c in zip(serial, threaded, again, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-13)
        assert torch.equal(b, c)
    assert threaded_metrics == pytest.approx(serial_metrics, rel=1e-12)
    assert torch.get_num_threads() == threads  # the workers' one-thread setting is undone


def test_worker_threads_refuse_running_batch_norm_and_keep_grads_on_nan():
    from attnmeta.learners import ProtoNet
    from attnmeta.models import Conv4
    from attnmeta.train import accumulate_meta_gradient

    batch = conv_episode_batch(2)
    with pytest.raises(ValueError, match="train.workers=0: expected 1"):
        accumulate_meta_gradient(MAML(MLP(), 0.1, 1), batch, backward_chunk=0, step=0, workers=0)
    protonet = ProtoNet(Conv4(out_dim=0, hidden=4, norm="running").double())
    with pytest.raises(ValueError, match="train.workers=2: the learner updates running batch-norm"):
        accumulate_meta_gradient(protonet, batch, backward_chunk=1, step=0, workers=2)
    learner = MAML(Conv4(out_dim=3, hidden=4).double(), 0.3, 1)
    batch.query_x[1, 0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match="meta-loss is nan at step 7"):
        accumulate_meta_gradient(learner, batch, backward_chunk=1, step=7, workers=2)
    assert all(p.grad is None for p in learner.parameters())


def _protonet_gradient(precision: str, workers: int) -> torch.Tensor:
    """ProtoNet over a batch-statistics Conv4 (float32): one batch's meta-gradient, flat."""
    from attnmeta.learners import ProtoNet
    from attnmeta.models import Conv4
    from attnmeta.train import accumulate_meta_gradient

    batch = conv_episode_batch()
    batch = type(batch)(batch.support_x.float(), batch.support_y, batch.query_x.float(),
                        batch.query_y)
    torch.manual_seed(0)
    learner = ProtoNet(Conv4(out_dim=0, hidden=8))
    accumulate_meta_gradient(learner, batch, backward_chunk=1, step=0, workers=workers,
                             precision=precision)
    return torch.cat([p.grad.flatten() for p in learner.parameters()])


def test_bfloat16_forwards_round_and_threads_enter_autocast_too():
    """precision='bfloat16' autocasts the forward: the meta-gradient moves off float32's
    (bfloat16 keeps 8 significant bits, and rounding makes max-pool ties) yet points the
    same way; worker threads (autocast state is per thread) give the serial bfloat16
    gradient, not the float32 one. The serial one runs on one intra-op thread, as each worker
    does: in bfloat16 two threads' reductions round differently (measured 1.3e-5 relative on
    an AMD EPYC, against 3e-9 on one thread each)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reference = _protonet_gradient("float32", workers=1)
        serial = _protonet_gradient("bfloat16", workers=1)
        threaded = _protonet_gradient("bfloat16", workers=2)
    finally:
        torch.set_num_threads(threads)
    off = ((serial - reference).norm() / reference.norm()).item()
    assert off > 1e-3
    assert F.cosine_similarity(serial, reference, dim=0) > 0.9
    assert ((threaded - serial).norm() / reference.norm()).item() < 1e-6
