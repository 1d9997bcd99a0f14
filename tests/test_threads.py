"""attnmeta.threads: an explicit count wins, small workloads get one thread, large ones the
cores other processes leave free (from /proc/stat, this process's own time left out)."""

from __future__ import annotations

import pytest
import torch

from attnmeta import threads
from support import one_line_error


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


def test_busy_elsewhere_reads_the_share_of_busy_jiffies(monkeypatch):
    readings = iter([(1000, 4000), (1100, 4200)])  # 100 of 200 jiffies busy: half the CPU
    monkeypatch.setattr(threads, "_cpu_jiffies", lambda: next(readings))
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    # this process sleeps while sampling, so nearly all of that is someone else's
    assert threads.busy_elsewhere(0.05) == pytest.approx(1.0, abs=0.1)


def test_use_threads_sets_torchs_count():
    before = torch.get_num_threads()
    try:
        assert threads.use_threads(1, "large") == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_train_threads_option_refuses_a_bad_count(tmp_path, value):
    one_line_error(["train", tmp_path / "none.yaml", "--threads", value],
                   f"--threads {value!r}: expected a whole number of at least 1, or auto")
