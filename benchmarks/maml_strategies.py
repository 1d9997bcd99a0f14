"""How should a meta-batch's inner loops run? Loop vs vmap, measured side by side.

For each model (the sinusoid MLP, the attention regressor, Conv4 on Omniglot shapes) and
each strategy, times full MAML meta-training steps (forward, inner loop, backward, Adam)
in the same process, alternating strategies, and also times a plain per-task
``torch.autograd.grad`` loop as the baseline everybody writes by hand.

    python benchmarks/maml_strategies.py [--repeats 5] [--out benchmarks/results]

Writes ``maml_strategies.json`` and ``maml_strategies.md``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.func import functional_call

from attnmeta import kernels
from attnmeta.machine import describe_machine
from attnmeta.speed.harness import omniglot_shaped_batch
from attnmeta.learners import MAML
from attnmeta.models import MLP, Conv4, MemoryAttentionRegressor
from attnmeta.tasks import Episode, SinusoidTasks


def autograd_loop_step(model, batch: Episode, inner_lr: float, steps: int, loss_fn) -> torch.Tensor:
    """The hand-written baseline: per-task ``torch.autograd.grad(create_graph=True)``."""
    names = [n for n, _ in model.named_parameters()]
    with kernels.differentiable(double_backward=True):  # the fused kernel has none
        return _autograd_loop(model, names, batch, inner_lr, steps, loss_fn)


def _autograd_loop(model, names, batch, inner_lr, steps, loss_fn) -> torch.Tensor:
    losses = []
    for t in range(batch.num_tasks):
        task = batch.task(t)
        fast = [p for _, p in model.named_parameters()]
        for _ in range(steps):
            out = functional_call(model, dict(zip(names, fast)), (task.support_x,))
            grads = torch.autograd.grad(loss_fn(out, task.support_y), fast, create_graph=True)
            fast = [p - inner_lr * g for p, g in zip(fast, grads)]
        out = functional_call(model, dict(zip(names, fast)), (task.query_x,))
        losses.append(loss_fn(out, task.query_y))
    return torch.stack(losses).mean()


def time_steps(step_fn, parameters, repeats: int) -> list[float]:
    optimizer = torch.optim.Adam(parameters, 1e-4)
    times = []
    for _ in range(repeats + 1):  # the first call warms caches and is dropped
        start = time.perf_counter()
        loss = step_fn()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--conv-tasks", type=int, default=8,
                        help="meta-batch for Conv4 (32 in the papers; fewer keeps this short)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    torch.manual_seed(0)
    sinusoid = SinusoidTasks(k_shot=10, q_query=10).batch(0, 25)
    cases = [
        ("sinusoid MLP 40-40, 25 tasks, K=10", MLP, sinusoid, 0.01, F.mse_loss),
        ("attention regressor, 25 tasks, K=10", MemoryAttentionRegressor, sinusoid, 0.01,
         F.mse_loss),
        (f"Conv4 28x28 5-way 1-shot 15 query, {args.conv_tasks} tasks",
         lambda: Conv4(out_dim=5), omniglot_shaped_batch(args.conv_tasks), 0.4, F.cross_entropy),
    ]
    rows = []
    for label, make_model, batch, inner_lr, loss_fn in cases:
        model = make_model()
        learners = {s: MAML(model, inner_lr, 1, loss_fn=loss_fn, strategy=s) for s in ("loop", "vmap")}
        runners = {
            "attnmeta loop": (lambda: learners["loop"].meta_loss(batch)),
            "attnmeta vmap": (lambda: learners["vmap"].meta_loss(batch)),
            "autograd.grad loop": (lambda: autograd_loop_step(model, batch, inner_lr, 1, loss_fn)),
        }
        samples: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(args.repeats):  # alternate so drift hits every strategy alike
            for name, run in runners.items():
                samples[name] += time_steps(run, model.parameters(), 1)
        for name, times in samples.items():
            rows.append({"case": label, "strategy": name, "median_s": statistics.median(times),
                         "min_s": min(times), "max_s": max(times), "repeats": len(times)})
            print(f"{label:45s} {name:20s} median {statistics.median(times) * 1e3:9.2f} ms")

    args.out.mkdir(parents=True, exist_ok=True)
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    machine = describe_machine()
    (args.out / "maml_strategies.json").write_text(
        json.dumps({"command": command, "machine": machine, "rows": rows}, indent=2))
    lines = ["# MAML meta-training step: loop vs vmap (second order, 1 inner step)", "",
             f"Command: `{command}`  ", f"Machine: {machine}  ",
             "Median (min–max) seconds per meta-batch step incl. backward and Adam; "
             "strategies alternate in one process.", "",
             "| case | strategy | median s | min s | max s | speed-up vs autograd loop |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        base = next(r for r in rows if r["case"] == row["case"]
                    and r["strategy"] == "autograd.grad loop")["median_s"]
        lines.append(f"| {row['case']} | {row['strategy']} | {row['median_s']:.4f} | "
                     f"{row['min_s']:.4f} | {row['max_s']:.4f} | {base / row['median_s']:.2f}× |")
    (args.out / "maml_strategies.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
