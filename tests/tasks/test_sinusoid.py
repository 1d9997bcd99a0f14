"""SinusoidTasks: the MAML sinusoid family, checked against its closed form and its ranges."""

from __future__ import annotations

import math

import torch

from attnmeta.tasks import Episode, SinusoidTasks


def test_targets_follow_closed_form_and_shapes():
    tasks = SinusoidTasks(k_shot=5, q_query=7, seed=3)
    episode, amplitude, phase = tasks.sample(index=2, num_tasks=6)
    assert isinstance(episode, Episode)
    assert episode.support_x.shape == episode.support_y.shape == (6, 5, 1)
    assert episode.query_x.shape == episode.query_y.shape == (6, 7, 1)
    assert amplitude.shape == phase.shape == (6,)
    assert episode.num_tasks == 6
    for x, y in ((episode.support_x, episode.support_y), (episode.query_x, episode.query_y)):
        assert x.dtype == y.dtype == torch.float32
        ref = amplitude.double()[:, None, None] * torch.sin(x.double() - phase.double()[:, None, None])
        torch.testing.assert_close(y.double(), ref, rtol=0, atol=1e-5)
    # the same task's support and query lie on the same curve: a fit on support predicts query
    for t in range(6):
        xs, ys = episode.support_x[t, :, 0].double(), episode.support_y[t, :, 0].double()
        design = torch.stack([torch.sin(xs), torch.cos(xs)], dim=1)  # A sin(x-φ) = a sin x + b cos x
        coef = torch.linalg.lstsq(design, ys[:, None]).solution[:, 0]
        torch.testing.assert_close(coef.norm(), amplitude[t].double(), rtol=1e-4, atol=1e-5)
        xq = episode.query_x[t, :, 0].double()
        pred = coef[0] * torch.sin(xq) + coef[1] * torch.cos(xq)
        torch.testing.assert_close(pred, episode.query_y[t, :, 0].double(), rtol=0, atol=1e-4)


def test_function_closed_form_known_values():
    x = torch.tensor([0.0, math.pi / 2, math.pi])
    y = SinusoidTasks.function(x, torch.tensor(2.0), torch.tensor(math.pi / 2))
    torch.testing.assert_close(y, torch.tensor([-2.0, 0.0, 2.0]), rtol=0, atol=1e-6)


def test_parameter_ranges_and_coverage():
    tasks = SinusoidTasks(k_shot=3, q_query=2, seed=0)
    episode, amplitude, phase = tasks.sample(index=0, num_tasks=10_000)
    x = torch.cat([episode.support_x, episode.query_x], dim=1)
    assert amplitude.min() >= 0.1 and amplitude.max() <= 5.0
    assert phase.min() >= 0.0 and phase.max() <= math.pi
    assert x.min() >= -5.0 and x.max() <= 5.0
    assert amplitude.min() < 0.2 and amplitude.max() > 4.9
    assert phase.min() < 0.05 and phase.max() > math.pi - 0.05
    assert x.min() < -4.99 and x.max() > 4.99
    # uniform: means at the midpoints (std of the mean ~0.014 for A, ~0.009 for φ, ~0.013 for x)
    assert abs(amplitude.mean().item() - 2.55) < 0.07
    assert abs(phase.mean().item() - math.pi / 2) < 0.05
    assert abs(x.mean().item()) < 0.07
    # and spread like U[a, b]: std (b - a) / √12
    assert abs(amplitude.std().item() - 4.9 / math.sqrt(12)) < 0.05
    assert abs(phase.std().item() - math.pi / math.sqrt(12)) < 0.03
    # amplitude and phase are drawn independently
    corr = torch.corrcoef(torch.stack([amplitude, phase]))[0, 1]
    assert abs(corr.item()) < 0.05


def test_custom_ranges_are_respected():
    tasks = SinusoidTasks(k_shot=4, q_query=4, amplitude_range=(1.0, 2.0),
                          phase_range=(0.5, 0.6), x_range=(0.0, 1.0), seed=1)
    episode, amplitude, phase = tasks.sample(0, 2000)
    assert 1.0 <= amplitude.min() and amplitude.max() <= 2.0
    assert 0.5 <= phase.min() and phase.max() <= 0.6
    for x in (episode.support_x, episode.query_x):
        assert 0.0 <= x.min() and x.max() <= 1.0


def test_reproducible_from_seed_and_index():
    tasks = SinusoidTasks(k_shot=4, q_query=6, seed=7)
    a, amp_a, ph_a = tasks.sample(5, 8)
    b, amp_b, ph_b = SinusoidTasks(k_shot=4, q_query=6, seed=7).sample(5, 8)
    for name in ("support_x", "support_y", "query_x", "query_y"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert torch.equal(amp_a, amp_b) and torch.equal(ph_a, ph_b)
    # batch() is sample()'s episode
    c = tasks.batch(5, 8)
    assert torch.equal(c.support_x, a.support_x) and torch.equal(c.query_y, a.query_y)
    # another index or another seed gives other tasks
    _, amp_next, _ = tasks.sample(6, 8)
    _, amp_seed, _ = SinusoidTasks(k_shot=4, q_query=6, seed=8).sample(5, 8)
    assert not torch.isclose(amp_a, amp_next).any()
    assert not torch.isclose(amp_a, amp_seed).any()
    # independent of the global RNG
    torch.manual_seed(123)
    d, _, _ = tasks.sample(5, 8)
    assert torch.equal(d.support_x, a.support_x)


def test_seed_and_index_streams_do_not_collide():
    from attnmeta.tasks import SinusoidTasks as Tasks

    a = Tasks(seed=0).batch(1_000_003, 2).support_x
    b = Tasks(seed=1).batch(0, 2).support_x
    assert not torch.equal(a, b)
