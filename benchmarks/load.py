"""How much a busy core slows the demo, by thread setting: quiet, and beside one
single-threaded PyTorch process that keeps a core busy (what a laptop with other work on
it looks like).

    python benchmarks/load.py [--steps-scale 0.2] [--test-tasks 100] [--out benchmarks/results]

Each row runs ``attnmeta demo`` in a fresh process (wall time, set-up included) with a
thread setting: ``--threads 2`` (torch's default here, the old behaviour), the same with
``OMP_WAIT_POLICY=PASSIVE`` (OpenMP threads sleep at barriers instead of spinning), and
the default (``--threads 0``: one thread for these small models, attnmeta.threads). Run it
on an otherwise quiet machine. Writes ``load.json`` and ``load.md`` (``--stem``: other names).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from attnmeta.files import atomic_write_bytes
from attnmeta.machine import describe_machine

BUSY = ("import torch\ntorch.set_num_threads(1)\na = torch.randn(512, 512)\n"
        "while True:\n    a = torch.tanh(a @ a)\n")
SETTINGS = (("--threads 2 (torch's default, before)", ["--threads", "2"], {}),
            ("--threads 2, OMP_WAIT_POLICY=PASSIVE", ["--threads", "2"],
             {"OMP_WAIT_POLICY": "PASSIVE"}),
            ("default (--threads 0: one thread for these small models)", [], {}))


def demo_seconds(args: list[str], env: dict[str, str], steps_scale: float,
                 test_tasks: int, limit: float) -> float:
    """Wall seconds of one demo; ``inf`` if it was stopped at ``limit`` seconds."""
    environment = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS",
                                                                     "OMP_WAIT_POLICY")}
    environment.update(env)
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "attnmeta.cli", "demo", "--out", f"{folder}/demo",
                   "--steps-scale", str(steps_scale), "--test-tasks", str(test_tasks),
                   "--no-progress", *args]
        start = time.perf_counter()
        try:
            subprocess.run(command, env=environment, check=True, stdout=subprocess.DEVNULL,
                           timeout=limit)
        except subprocess.TimeoutExpired:
            return float("inf")
        return time.perf_counter() - start


def shown(row: dict) -> str:
    """``123.4 s (3.30x)``, or ``> 240 s (> 9.1x)`` for a demo stopped at the limit."""
    more = "> " if row["stopped"] else ""
    return f"{more}{row['loaded_s']:.1f} s ({more}{row['slowdown']:.2f}x)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps-scale", type=float, default=0.2)
    parser.add_argument("--test-tasks", type=int, default=100)
    parser.add_argument("--limit", type=float, default=240.0,
                        help="stop a demo after this many seconds (its row then says '>')")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--stem", default="load",
                        help="results file names: STEM.json, STEM.md (another machine's "
                             "rows beside this one's)")
    args = parser.parse_args()
    rows = []
    for name, flags, env in SETTINGS:
        quiet = demo_seconds(flags, env, args.steps_scale, args.test_tasks, args.limit)
        busy = subprocess.Popen([sys.executable, "-c", BUSY],
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        try:
            loaded = demo_seconds(flags, env, args.steps_scale, args.test_tasks, args.limit)
        finally:
            busy.kill()
            busy.wait()
        rows.append({"setting": name, "quiet_s": quiet, "loaded_s": min(loaded, args.limit),
                     "stopped": loaded == float("inf"), "slowdown": min(loaded, args.limit) / quiet})
        print(f"{name}: quiet {quiet:.1f} s, one core busy {shown(rows[-1])}", flush=True)
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    result = {"command": command, "machine": describe_machine(), "steps_scale": args.steps_scale,
              "test_tasks": args.test_tasks, "rows": rows,
              "busy_process": "one single-threaded PyTorch process: tanh(a @ a), 512 x 512"}
    lines = ["# The demo with one core busy", "",
             f"Command: `{command}`  ", f"Machine: {result['machine']}  ",
             f"`attnmeta demo --steps-scale {args.steps_scale} --test-tasks {args.test_tasks}` in "
             "a fresh process (wall time), alone and beside one single-threaded PyTorch process "
             "that keeps a core busy. Goal: at most 1.5x slower with the core busy.", "",
             "| threads | quiet (s) | one core busy (s, slowdown) |", "|---|---|---|"]
    lines += [f"| {r['setting']} | {r['quiet_s']:.1f} | {shown(r)} |" for r in rows]
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out / f"{args.stem}.json", json.dumps(result, indent=1).encode())
    atomic_write_bytes(args.out / f"{args.stem}.md", ("\n".join(lines) + "\n").encode())
    print(f"wrote {args.out / f'{args.stem}.md'}")


if __name__ == "__main__":
    main()
