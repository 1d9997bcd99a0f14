"""attnmeta.threads: an explicit count wins, small workloads get one thread, large ones the
cores other processes leave free (from /proc/stat, this process's own time left out)."""

from __future__ import annotations

import pytest
import torch

from attnmeta import threads


def test_an_explicit_count_wins_and_small_workloads_get_one_thread(monkeypatch):
    monkeypatch.setattr(threads, "busy_elsewhere", lambda sample_seconds=0.25: 5.0)
    assert threads.choose_threads(3, "small") == 3
    assert threads.choose_threads(0, "small") == 1
    assert threads.choose_threads(0, "large") == 1  # never fewer than one


def test_large_workloads_get_the_cores_left_free(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 8)
    monkeypatch.setattr(threads, "busy_elsewhere", lambda sample_seconds=0.25: 2.6)
    assert threads.choose_threads(0, "large") == 5
    monkeypatch.setattr(threads, "busy_elsewhere", lambda sample_seconds=0.25: 0.0)
    assert threads.choose_threads(0, "large") == 8


def test_busy_elsewhere_reads_the_share_of_busy_jiffies_less_its_own(monkeypatch):
    # 100 of 200 jiffies busy on 2 cores: 1.0 core; this process used 0.02 CPU s of 0.1 s:
    # 0.2 of a core is its own, so 0.8 is someone else's. Readings are injected (no clock).
    readings = iter([(1000, 4000, 3.00, 50.0), (1100, 4200, 3.02, 50.1)])
    monkeypatch.setattr(threads, "_reading", lambda: next(readings))
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    assert threads.busy_elsewhere(0.0) == pytest.approx(0.8)


def test_busy_elsewhere_is_never_negative_and_zero_without_a_reading(monkeypatch):
    readings = iter([(1000, 4000, 3.0, 50.0), (1010, 4200, 3.1, 50.1)])  # own > busy
    monkeypatch.setattr(threads, "_reading", lambda: next(readings))
    assert threads.busy_elsewhere(0.0) == 0.0

    def unreadable():
        raise OSError("no /proc/stat")

    monkeypatch.setattr(threads, "_reading", unreadable)
    assert threads.busy_elsewhere(0.0) == 0.0


def test_use_threads_sets_torchs_count():
    before = torch.get_num_threads()
    try:
        assert threads.use_threads(1, "large") == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
