"""How many intra-op threads a workload gets, from what it is and how busy the machine is.

Measured on a 2-core machine (``benchmarks/results/design_timings.md``): a sinusoid MLP
(2 x 40 units) gains nothing from a second thread, and a second thread hurts badly once
another process keeps a core busy — ``attnmeta demo`` took several times as long beside one
single-threaded PyTorch job, because each parallel region waits at its barrier for the
thread that lost its core. So:

- ``"small"`` workloads (overhead-bound: tiny MLPs, sinusoid regression) run on one thread;
- ``"large"`` workloads (convolutions, transformers over batches) get the cores that no
  other process is using right now, measured from ``/proc/stat`` over a quarter second
  (this process's own CPU time left out), at least one.

An explicit count (``--threads N``, ``train.threads: N``) always wins. Where ``/proc/stat``
cannot be read (not Linux), every usable core counts as free.
"""

from __future__ import annotations

import os
import time
from typing import Literal

import torch

__all__ = ["usable_cores", "busy_elsewhere", "choose_threads", "use_threads", "Workload"]

Workload = Literal["small", "large"]


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot, from the first line of /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (not guest)
    return total - idle, total


def _reading() -> tuple[int, int, float, float]:
    """(busy jiffies, total jiffies, this process's CPU seconds, monotonic seconds) now."""
    busy, total = _cpu_jiffies()
    return busy, total, sum(os.times()[:2]), time.monotonic()


def busy_elsewhere(sample_seconds: float = 0.25) -> float:
    """Cores' worth of CPU that other processes used over the last ``sample_seconds``
    (0.0 where ``/proc/stat`` cannot be read)."""
    try:
        busy_before, total_before, own_before, clock_before = _reading()
        time.sleep(sample_seconds)
        busy_after, total_after, own_after, clock_after = _reading()
    except (OSError, ValueError, IndexError):
        return 0.0
    if total_after <= total_before:
        return 0.0
    cores = os.cpu_count() or 1
    busy_cores = cores * (busy_after - busy_before) / (total_after - total_before)
    own_cores = (own_after - own_before) / max(clock_after - clock_before, 1e-9)
    return max(0.0, busy_cores - own_cores)


def choose_threads(requested: int = 0, workload: Workload = "large") -> int:
    """``requested`` if > 0; else 1 for a ``"small"`` workload, and for a ``"large"`` one
    the usable cores less those other processes keep busy (rounded), at least 1."""
    if requested > 0:
        return requested
    if workload == "small":
        return 1
    return max(1, usable_cores() - round(busy_elsewhere()))


def use_threads(requested: int = 0, workload: Workload = "large") -> int:
    """Set torch's intra-op threads to :func:`choose_threads` and return the count."""
    threads = choose_threads(requested, workload)
    torch.set_num_threads(threads)
    return threads
