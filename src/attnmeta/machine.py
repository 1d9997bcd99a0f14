"""The one description of the machine a result was measured on, for every results file."""

from __future__ import annotations

import os
import platform

import torch

__all__ = ["machine_info", "describe_machine"]


def machine_info() -> dict[str, object]:
    """CPU model, core count, torch intra-op threads and versions, as results JSON records
    them."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:  # Linux names the model; platform often not
            cpu = next(line.split(":", 1)[1].strip() for line in cpuinfo
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count() or 0, "threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version()}


def describe_machine() -> str:
    """One line, e.g. ``x86_64, 2 cores, 1 torch thread, torch 2.13.0, Python 3.11.7``."""
    info = machine_info()
    threads = info["threads"]
    return (f"{info['cpu']}, {info['cores']} cores, {threads} torch thread"
            f"{'' if threads == 1 else 's'}, torch {info['torch']}, Python {info['python']}")
