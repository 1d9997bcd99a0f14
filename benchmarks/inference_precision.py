"""bfloat16 inference (a fitted classifier's ``precision: bfloat16``) against float32: the
same trained runs evaluated on the same seeded Omniglot test episodes both ways.

    python benchmarks/inference_precision.py runs/pretrain_conv4_bf16_60min \
        runs/pretrain_vit_25min [--episodes 1000] [--data-root ../shared/data]

Each run (a pretrain run: prototypes over its frozen encoder; or an episodic run of a
learner that adapts in one forward pass) is evaluated on every Omniglot setting in float32
and with its forward passes under ``torch.autocast`` to bfloat16 — the context
:func:`attnmeta.learners.base.forward_precision` gives, the one the fitted classifier predicts in.
The episodes are the same, so the per-episode differences are paired: the table gives both
accuracies with their 95% CIs, the mean paired difference with its own, and whether the two
intervals overlap. Writes ``inference_precision.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

from attnmeta.metrics import paired_difference, summarize
from attnmeta.files import atomic_write_bytes
from attnmeta.machine import describe_machine
from attnmeta.runs.evaluation import episode_accuracies, requested_shape
from attnmeta.runs.evaluation import load_classes_run
from attnmeta.learners.precision import forward_precision

SETTINGS = ((5, 1), (5, 5), (20, 1), (20, 5))


def load(run_dir: Path, data_root: str | None):
    """(config, learner, test split as the learner reads it) of a pretrain or episodic run."""
    run = load_classes_run(run_dir, data_root)
    if run.learner.adapts_by_gradient:
        raise SystemExit(f"{run_dir}: a {run.learner.display_name} run adapts by gradient "
                         "steps, which bfloat16 inference refuses")
    return run.config, run.learner, run.learner_split(run.config.eval.split)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    rows = []
    for run_dir in args.runs:
        config, learner, split = load(run_dir, args.data_root)
        for n_way, k_shot in SETTINGS:
            shape = requested_shape(config, n_way, k_shot, None)
            per_precision = {}
            for precision in ("float32", "bfloat16"):
                with forward_precision(learner, precision):
                    per_precision[precision] = episode_accuracies(
                        learner, split, shape, args.episodes, config.eval.seed)
            full, half = per_precision["float32"], per_precision["bfloat16"]
            low, high = summarize(full), summarize(half)
            paired = paired_difference(half, full)
            a32, c32, a16, c16 = low.mean, low.ci95, high.mean, high.ci95
            difference, difference_ci = paired.mean, paired.ci95
            rows.append({"run": run_dir.name, "n_way": n_way, "k_shot": k_shot,
                         "episodes": args.episodes, "episode_seed": config.eval.seed,
                         "float32": 100 * a32, "float32_ci95": 100 * c32,
                         "bfloat16": 100 * a16, "bfloat16_ci95": 100 * c16,
                         "difference": 100 * difference, "difference_ci95": 100 * difference_ci,
                         "episodes_changed": int(np.sum(full != half)),
                         "overlap": bool(abs(a16 - a32) <= c16 + c32)})
            print(f"{run_dir.name} {n_way}w{k_shot}s: float32 {100 * a32:.2f} ± {100 * c32:.2f}, "
                  f"bfloat16 {100 * a16:.2f} ± {100 * c16:.2f}", flush=True)
    # rows of earlier invocations (other runs) are kept, keyed by run and setting; read only
    # now, as another invocation may have written meanwhile
    path = args.out / "inference_precision.json"
    saved = json.loads(path.read_text())["rows"] if path.is_file() else []
    for row in rows:
        row.update(command=command, machine=describe_machine())
    merged = {(r["run"], r["n_way"], r["k_shot"]): r for r in saved + rows}
    result = {"rows": [merged[key] for key in sorted(merged)]}
    atomic_write_bytes(path, json.dumps(result, indent=1).encode())
    atomic_write_bytes(args.out / "inference_precision.md", markdown(result).encode())


def markdown(result: dict) -> str:
    commands = sorted({row["command"] for row in result["rows"]})
    machines = sorted({row["machine"] for row in result["rows"]})
    lines = ["# bfloat16 inference against float32 (same runs, same test episodes)", "",
             *(f"Command: `{command}`  " for command in commands),
             f"Machine: {'; '.join(machines)}  ",
             "Forward passes under `torch.autocast(dtype=torch.bfloat16)` "
             "(`attnmeta.learners.base.forward_precision`, what a fitted classifier with "
             "`precision: bfloat16` predicts in); accuracy % ± 95% CI over the episodes; the "
             "difference is bfloat16 − float32, paired by episode.", "",
             "| run | setting | float32 | bfloat16 | difference | episodes changed | CIs overlap |",
             "|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        lines.append(
            f"| {row['run']} | {row['n_way']}-way {row['k_shot']}-shot | {row['float32']:.2f} ± "
            f"{row['float32_ci95']:.2f} | {row['bfloat16']:.2f} ± {row['bfloat16_ci95']:.2f} | "
            f"{row['difference']:+.3f} ± {row['difference_ci95']:.3f} | "
            f"{row['episodes_changed']} / {row['episodes']} | "
            f"{'yes' if row['overlap'] else 'no'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
