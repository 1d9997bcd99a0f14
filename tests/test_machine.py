"""attnmeta.machine: the one-line description of the machine a result was measured on."""

from __future__ import annotations

import os
import platform

import torch

from attnmeta import machine


def test_machine_info_records_cores_threads_and_versions():
    info = machine.machine_info()
    assert set(info) == {"cpu", "cores", "threads", "torch", "python"}
    assert info["cores"] == os.cpu_count() and info["threads"] == torch.get_num_threads()
    assert info["torch"] == torch.__version__ and info["python"] == platform.python_version()
    assert isinstance(info["cpu"], str) and info["cpu"]


def test_describe_machine_writes_one_line_with_thread_in_the_singular_for_one(monkeypatch):
    facts = {"cpu": "Test CPU", "cores": 2, "threads": 1, "torch": "2.0", "python": "3.11.7"}
    monkeypatch.setattr(machine, "machine_info", lambda: dict(facts))
    assert machine.describe_machine() == \
        "Test CPU, 2 cores, 1 torch thread, torch 2.0, Python 3.11.7"
    facts["threads"] = 4
    assert machine.describe_machine() == \
        "Test CPU, 2 cores, 4 torch threads, torch 2.0, Python 3.11.7"


def test_the_cpu_is_the_model_name_proc_cpuinfo_gives(monkeypatch, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Example Core 9 @ 3 GHz\nflags\t: sse\n")
    real_open = open
    monkeypatch.setattr("builtins.open", lambda path, *a, **k: real_open(
        cpuinfo if path == "/proc/cpuinfo" else path, *a, **k))
    assert machine.machine_info()["cpu"] == "Example Core 9 @ 3 GHz"
