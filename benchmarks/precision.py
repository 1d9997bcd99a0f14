"""bfloat16 training (``train.precision: bfloat16``) against float32: accuracy on the same
Omniglot test episodes, and speed, from results the other benchmarks wrote.

    python benchmarks/precision.py [--float32-run pretrain_conv4]
        [--bfloat16-runs pretrain_conv4_bf16 pretrain_conv4_bf16_13min]

Accuracy rows come from ``benchmarks/results/pretrain.json`` (``benchmarks/pretrain.py``
evaluated both runs on the same seeded episodes): the float32 run at its checkpoint nearest
to ``--minutes`` of training, the bfloat16 run at the same step (precision alone) and at the
same training time (precision and its speed); the bfloat16 checkpoints may sit in several
run folders (a copy of the run kept at the float32 run's step, the run trained on). Two results agree when their 95% intervals
overlap. Speed rows come from ``paths.json`` (pretraining images/s) and ``speed.json``
(MAML's bfloat16 meta-gradient). Writes ``precision.json`` and ``precision.md``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from attnmeta.files import atomic_write_bytes

SETTINGS = ((5, 1), (5, 5), (20, 1), (20, 5))


def _rows(pretrain: list[dict], runs: list[str]) -> dict[int, dict[tuple[int, int], dict]]:
    """step -> (n_way, k_shot) -> row of any of ``runs``, random-class episodes only."""
    found: dict[int, dict[tuple[int, int], dict]] = {}
    for row in pretrain:
        if row["run"] in runs and row.get("within", "none") == "none":
            found.setdefault(row["step"], {})[(row["n_way"], row["k_shot"])] = row
    return found


def overlap(a: dict, b: dict) -> bool:
    return abs(a["accuracy"] - b["accuracy"]) <= a["ci95"] + b["ci95"]


def compare(pretrain: list[dict], float32_run: str, bfloat16_runs: list[str],
            minutes: float) -> dict:
    reference_steps = _rows(pretrain, [float32_run])
    bf16_steps = _rows(pretrain, bfloat16_runs)
    if not reference_steps or not bf16_steps:
        raise SystemExit(f"pretrain.json holds no rows of {float32_run!r} or {bfloat16_runs}: "
                         "run benchmarks/pretrain.py on them first")
    def complete(steps: dict) -> dict:
        return {s: r for s, r in steps.items() if all(k in r for k in SETTINGS)}

    reference_steps, bf16_steps = complete(reference_steps), complete(bf16_steps)
    reference = min(reference_steps.values(),
                    key=lambda r: abs(r[(20, 1)]["train_minutes"] - minutes))
    step = reference[(20, 1)]["step"]
    same_steps = bf16_steps.get(step)
    same_time = min(bf16_steps.values(), key=lambda r: abs(
        r[(20, 1)]["train_minutes"] - reference[(20, 1)]["train_minutes"]))
    comparisons = []
    for setting in SETTINGS:
        entry = {"setting": f"{setting[0]}w{setting[1]}s", "float32": reference[setting]}
        for name, rows in (("same_steps", same_steps), ("same_time", same_time)):
            if rows is not None:
                entry[name] = rows[setting]
                entry[f"{name}_overlap"] = overlap(reference[setting], rows[setting])
        comparisons.append(entry)
    return {"float32_run": float32_run, "bfloat16_runs": bfloat16_runs, "rows": comparisons}


def _cell(row: dict | None) -> str:
    if row is None:
        return "—"
    return (f"{row['accuracy']:.2f} ± {row['ci95']:.2f} ({row['step']} steps, "
            f"{row['train_minutes']:.1f} min)")


def markdown(result: dict) -> str:
    lines = ["# bfloat16 training against float32", "",
             f"Command: `{result['command']}`  ",
             "Omniglot Vinyals split, supervised pretraining of Conv4 "
             "(`configs/omniglot/pretrain_conv4.yaml`), evaluated as cosine prototypes over the "
             "frozen encoder on the same 1000 seeded test episodes per setting (seed 1234, 15 "
             "queries per class); float32 run "
             f"`{result['accuracy']['float32_run']}`, bfloat16 runs "
             + ", ".join(f"`{run}`" for run in result["accuracy"]["bfloat16_runs"])
             + " (`train.precision=bfloat16`: the "
             "training forward under `torch.autocast`, weights, optimiser and evaluation in "
             "float32). \"agree\": the 95% intervals overlap. Both trained with one thread "
             "(`OMP_NUM_THREADS=1`) beside one other job. How the bfloat16 checkpoints were "
             "made: `attnmeta train configs/omniglot/pretrain_conv4.yaml train.precision="
             "bfloat16 train.steps=3257 --out runs/pretrain_conv4_bf16`, the folder copied to "
             "`runs/pretrain_conv4_bf16_13min` (`cp -r`), then the original resumed with "
             "`--resume train.steps=6000 train.max_minutes=20`; both evaluated with "
             "`python benchmarks/pretrain.py` (commands in pretrain.md).", "",
             "| setting | float32 | bfloat16, same steps | agree? | bfloat16, same time | agree? |",
             "|---|---|---|---|---|---|"]
    for entry in result["accuracy"]["rows"]:
        def agree(name: str) -> str:
            key = f"{name}_overlap"
            if key not in entry:
                return "—"
            higher = entry[name]["accuracy"] > entry["float32"]["accuracy"]
            return "yes" if entry[key] else f"no: bfloat16 {'higher' if higher else 'lower'}"

        lines.append(f"| {entry['setting']} | {_cell(entry['float32'])} | "
                     f"{_cell(entry.get('same_steps'))} | {agree('same_steps')} | "
                     f"{_cell(entry.get('same_time'))} | {agree('same_time')} |")
    speed = result.get("speed", {})
    if speed.get("pretraining"):
        lines += ["", "Speed (`benchmarks/results/paths.md`, 2 threads, quiet machine):", "",
                  "| path | precision | images/s | GFLOP/s | MFU (of its precision's peak) |",
                  "|---|---|---|---|---|"]
        for row in speed["pretraining"]:
            lines.append(f"| pretraining step | {row['precision']} | {row['rate']:.0f} | "
                         f"{row['gflops']:.0f} | {100 * row['mfu']:.0f}% |")
    if speed.get("maml"):
        lines += ["", "MAML (`benchmarks/results/speed.md`): bfloat16 forwards against "
                  "float32 on one worker, and how far the meta-gradient moves (relative to its "
                  "largest entry; float32's is 0). `attnmeta train` refuses "
                  "`train.precision=bfloat16` for learners that adapt by gradient.", "",
                  "| inner steps | order | float32 s | bfloat16 s | speed-up | bfloat16 grad diff |",
                  "|---|---|---|---|---|---|"]
        for row in speed["maml"]:
            lines.append(f"| {row['inner_steps']} | {row['order']} | {row['float32_s']:.2f} | "
                         f"{row['bfloat16_s']:.2f} | {row['float32_s'] / row['bfloat16_s']:.2f}× | "
                         f"{row['grad_diff']:.1e} |")
    return "\n".join(lines) + "\n"


def speed_rows(results: Path) -> dict:
    speed: dict = {}
    paths = results / "paths.json"
    if paths.is_file():
        speed["pretraining"] = [r for r in json.loads(paths.read_text())["rows"]
                                if r["path"].startswith("pretraining step")]
    maml = results / "speed.json"
    if maml.is_file():
        rows = json.loads(maml.read_text())["maml"]
        for bf16 in (r for r in rows if r.get("key") == "attnmeta_bfloat16" and "median_s" in r):
            reference = next((r for r in rows if r.get("key") == "attnmeta_1_worker"
                              and r["inner_steps"] == bf16["inner_steps"]
                              and r["order"] == bf16["order"] and "median_s" in r), None)
            if reference is not None:
                speed.setdefault("maml", []).append({
                    "inner_steps": bf16["inner_steps"], "order": bf16["order"],
                    "float32_s": reference["median_s"], "bfloat16_s": bf16["median_s"],
                    "grad_diff": bf16["meta_gradient_rel_diff_vs_plain_loop"]})
    return speed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--float32-run", default="pretrain_conv4")
    parser.add_argument("--bfloat16-runs", nargs="+",
                        default=["pretrain_conv4_bf16", "pretrain_conv4_bf16_13min"])
    parser.add_argument("--minutes", type=float, default=20.0,
                        help="Compare at the float32 checkpoint nearest this training time.")
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    pretrain = json.loads((args.results / "pretrain.json").read_text())
    result = {"command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
              "accuracy": compare(pretrain, args.float32_run, args.bfloat16_runs, args.minutes),
              "speed": speed_rows(args.results)}
    atomic_write_bytes(args.results / "precision.json", json.dumps(result, indent=1).encode())
    atomic_write_bytes(args.results / "precision.md", markdown(result).encode())
    print(markdown(result))


if __name__ == "__main__":
    main()
