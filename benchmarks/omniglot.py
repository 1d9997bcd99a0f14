"""Omniglot reproduction table: train each config within a time budget, evaluate, tabulate.

    python benchmarks/omniglot.py configs/omniglot/protonet_5w1s.yaml [...] --minutes 20

For each config: meta-train (stopping with a checkpoint when ``--minutes`` of training
time are spent, or at the config's steps), evaluate on 1000 seeded test episodes, and
record the row in ``benchmarks/results/omniglot.json`` (rows of earlier invocations are
kept, so rows can be produced one at a time). Then rewrite ``omniglot.md`` and
``omniglot_curves.png`` (validation accuracy during training against training time) from the
JSON. A killed invocation resumes its rows with ``--resume``.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import shlex
import sys
from dataclasses import asdict
from pathlib import Path


import yaml

from attnmeta.machine import describe_machine
from attnmeta.runs.config import config_from_dict, config_to_dict, load_config
from attnmeta.runs.episodic import evaluate_checkpoint, train_run
from attnmeta.files import atomic_write_bytes

# Published accuracies (%), keyed by (learner, n_way, k_shot).
PAPERS = {
    "maml": ("Finn et al. 2017", {(5, 1): 98.7, (5, 5): 99.9, (20, 1): 95.8, (20, 5): 98.9}),
    "fomaml": ("Finn et al. 2017", {(5, 1): 98.3, (5, 5): 99.2, (20, 1): 89.4, (20, 5): 97.9}),
    "protonet": ("Snell et al. 2017", {(5, 1): 98.8, (5, 5): 99.7, (20, 1): 96.0, (20, 5): 98.9}),
    "matching": ("Vinyals et al. 2016", {(5, 1): 98.1, (5, 5): 98.9, (20, 1): 93.8, (20, 5): 98.5}),
    "reptile": ("Nichol et al. 2018, transductive",
                {(5, 1): 97.68, (5, 5): 99.48, (20, 1): 89.43, (20, 5): 97.12}),
}


BACKBONE_LABELS = {"vit": "ViT"}


def method_label(config) -> str:
    """The learner, with its backbone and options where they differ from the papers'."""
    label = config.learner.name
    if config.learner.head_init == "prototypes":  # Proto-MAML
        label = f"proto-{label}"
    if config.learner.name == "matching" and config.learner.fce:
        label += " + FCE"
    if config.model.backbone != "conv4":
        label += f" ({BACKBONE_LABELS.get(config.model.backbone, config.model.backbone)})"
    if config.model.init is not None:
        label += ", pretrained" + (" + frozen" if config.model.freeze else "")
    if config.learner.strategy == "compiled":
        label += ", compiled"
    return label


def pretrain_minutes(config) -> float:
    """Training minutes of the ``model.init`` run a config starts from (0 without one)."""
    if config.model.init is None:
        return 0.0
    from attnmeta.checkpoint import read_checkpoint_record, resolve_checkpoint

    return read_checkpoint_record(resolve_checkpoint(Path(config.model.init))).get(
        "elapsed_s", 0.0) / 60


def pretrain_command(config) -> str:
    """The command that trained the ``model.init`` run ('' without one)."""
    if config.model.init is None:
        return ""
    from attnmeta.checkpoint import read_checkpoint_record, resolve_checkpoint

    return read_checkpoint_record(resolve_checkpoint(Path(config.model.init))).get("command", "")


def training_key(config) -> str:
    """Rows whose configs differ only in test episodes share one trained model."""
    values = config_to_dict(config)
    for key in ("name", "eval"):
        values.pop(key)
    values["data"].pop("test")
    return json.dumps(values, sort_keys=True)


def earlier_runs(runs: Path) -> dict[str, tuple[Path, dict]]:
    """Finished runs under ``runs`` by training key, with their steps and training time."""
    found = {}
    for config_file in sorted(runs.glob("*/config.yaml")):
        run_dir = config_file.parent
        checkpoints = sorted((run_dir / "checkpoints").glob("step_*.json"))
        if not checkpoints:
            continue
        record = json.loads(checkpoints[-1].read_text())
        config = config_from_dict(yaml.safe_load(config_file.read_text()))
        found[training_key(config)] = (run_dir, {"steps": record["step"],
                                                 "train_seconds": record.get("elapsed_s", 0.0)})
    return found


def run_row(config_path: Path, minutes: float, runs: Path, resume: bool, data_root: str | None,
            command: str, trained_runs: dict[str, tuple[Path, dict]],
            eval_episodes: int | None = None, tag: str = "", eval_only: bool = False,
            overrides: tuple[str, ...] = ()) -> dict:
    config = load_config(config_path, [f"train.max_minutes={minutes}", *overrides])
    if tag:
        config.name = f"{config.name}_{tag}"
    if data_root is not None:
        config.data.root = data_root
    key = training_key(config)
    if key not in trained_runs and eval_only:
        trained_runs.update(earlier_runs(runs))
    if key in trained_runs:  # e.g. ProtoNets' 20-way rows: same training as the 5-way row
        run_dir, trained = trained_runs[key]
    elif eval_only:
        raise SystemExit(f"--eval-only: no run under {runs} was trained with the training "
                         f"section of {config_path} (and --minutes {minutes})")
    else:
        run_dir = runs / config.name
        trained = asdict(train_run(config, run_dir, resume=resume, progress=True,
                                   command=command))
        trained_runs[key] = (run_dir, trained)
    result = evaluate_checkpoint(run_dir, n_way=config.data.test.n_way, episodes=eval_episodes,
                                 k_shot=config.data.test.k_shot, command=command,
                                 progress=True).to_dict()
    log_path = run_dir / "log.jsonl"  # absent when the budget ended before the first log
    curve = [json.loads(line) for line in log_path.read_text().splitlines()] if log_path.exists() else []
    # in-training evaluation reads train.eval_split (model selection), not eval.split
    offset = 60 * pretrain_minutes(config)  # the curve starts where pretraining ended
    curve = [(offset + e["elapsed_s"], e[f"{config.train.eval_split}_accuracy"]) for e in curve
             if f"{config.train.eval_split}_accuracy" in e]
    # The papers' figures are for their Conv4 models; a variant has no published figure.
    variant = config.model.backbone != "conv4" or (config.learner.name == "matching"
                                                   and config.learner.fce)
    source, figures = ("", {}) if variant else PAPERS.get(config.learner.name, ("", {}))
    return {
        "name": config.name, "config": str(config_path), "learner": config.learner.name,
        "method": method_label(config),
        "n_way": result["n_way"], "k_shot": result["k_shot"],
        "accuracy": 100 * result["accuracy"], "ci95": 100 * result["ci95"],
        "episodes": result["episodes"], "episode_seed": result["episode_seed"],
        "train_seed": config.seed,
        "paper": figures.get((result["n_way"], result["k_shot"])), "paper_source": source,
        "steps": trained["steps"], "planned_steps": config.train.steps,
        # pretraining included: the model.init run's minutes are part of this row's cost
        "train_minutes": trained["train_seconds"] / 60 + pretrain_minutes(config),
        "pretrain_minutes": pretrain_minutes(config), "budget_minutes": minutes,
        "pretrain_command": pretrain_command(config),
        "protocol": config.data.protocol + ("" if config.data.test.within == "none"
                                            else f", within {config.data.test.within}"),
        "trained_in": run_dir.name, "curve": curve, "command": command, "machine": describe_machine(),
    }


def write_table(rows: list[dict], out: Path) -> None:
    lines = [
        "# Omniglot few-shot classification (Vinyals split unless the protocol says Lake)",
        "",
        "Accuracy (%) ± 95% CI over seeded test episodes; training on this repository's CPU "
        "machine within the stated budget. Each row names the exact command that made it. "
        "Train time is wall-clock training time (evaluation excluded); these runs shared the "
        "2 cores with development work at times, so the steps reached in a budget are a lower "
        "bound. ProtoNets' 20-way rows evaluate the model trained for the 5-way row (same "
        "training, as in the paper; 'trained in' names the run); so do the 20-way rows of FEAT, "
        "the in-context learner and Matching Networks with FCE. Later rows ran with one thread "
        "per process (`OMP_NUM_THREADS=1`, see 'Machine') because other jobs shared the CPU. "
        "A 'pretrained' row's train time includes its pretraining run's (that run's command "
        "comes first). "
        "Rows with fewer than 1000 episodes say so: Reptile's 50 inner Adam steps per test "
        "episode did not fit 1000 episodes in the time. The tables at the end put methods "
        "trained for the same number of minutes side by side. Rows whose method names a run "
        "in brackets come from `benchmarks/pretrain.py` (a pretraining run, or a learner "
        "started from one): their 'paper' is the best published Conv-4-scale figure, and "
        "they train on 1100 of Vinyals' 1200 training characters, the other 100 being the "
        "validation split their curves read; the rows without brackets are older and "
        "trained on all 1200 (their in-training evaluation read the test split).",
        "",
        "| method | setting | protocol | ours | paper | trained in | train steps (of planned) | train time (min) | episodes (seed) | command |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in sorted(rows, key=lambda r: (r.get("method", r["learner"]), r["budget_minutes"],
                                           r["n_way"], r["k_shot"])):
        paper = f"{row['paper']:.2f} ({row['paper_source']})" if row["paper"] else "—"
        lines.append(
            f"| {row.get('method', row['learner'])} | {row['n_way']}-way {row['k_shot']}-shot | "
            f"{row['protocol']} | "
            f"{row['accuracy']:.2f} ± {row['ci95']:.2f} | {paper} | {row['trained_in']} | "
            f"{row['steps']} ({row['planned_steps'] or '—'}) | {row['train_minutes']:.1f} | "
            f"{row['episodes']} ({row['episode_seed']}) | "
            + (f"`{row['pretrain_command']}`, then " if row.get("pretrain_command") else "")
            + f"`{row['command']}` |")
    lines += equal_budget_tables(rows)
    machines = sorted({row["machine"] for row in rows})
    lines += ["", f"Machine: {'; '.join(machines)}.", "",
              "![validation accuracy against training time](omniglot_curves.png)", ""]
    (out / "omniglot.md").write_text("\n".join(lines))


def equal_budget_tables(rows: list[dict]) -> list[str]:
    """One accuracy table per training budget shared by several methods: methods as rows,
    settings as columns, so methods are compared at equal training time."""
    settings = [(5, 1), (5, 5), (20, 1), (20, 5)]
    lines = []
    for budget in sorted({r["budget_minutes"] for r in rows}):
        same = [r for r in rows if r["budget_minutes"] == budget]
        methods = sorted({r.get("method", r["learner"]) for r in same})
        if len(methods) < 2:
            continue
        lines += ["", f"## At equal training budget: {budget:g} minutes per trained model", "",
                  "| method | " + " | ".join(f"{n}-way {k}-shot" for n, k in settings) + " |",
                  "|---|" + "---|" * len(settings)]
        for method in methods:
            cells = []
            for n, k in settings:
                match = [r for r in same if r.get("method", r["learner"]) == method
                         and (r["n_way"], r["k_shot"]) == (n, k)]
                cells.append(f"{match[0]['accuracy']:.2f} ± {match[0]['ci95']:.2f} "
                             f"({match[0]['steps']} steps)" if match else "—")
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def plot_curves(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for row in sorted(rows, key=lambda r: r["name"]):
        if row["curve"] and row["trained_in"] == row["name"]:  # one curve per trained model
            minutes = [t / 60 for t, _ in row["curve"]]
            ax.plot(minutes, [100 * a for _, a in row["curve"]], marker=".", label=row["name"])
    ax.set_xlabel("training time (minutes, evaluation excluded)")
    ax.set_ylabel("validation accuracy during training (%)")
    ax.set_title("Omniglot: accuracy against training time")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "omniglot_curves.png", dpi=120)
    plt.close(fig)


def record_rows(new_rows: list[dict], out: Path) -> list[dict]:
    """Add ``new_rows`` to ``out/omniglot.json`` (replacing rows of the same ``name``) and
    rewrite ``omniglot.md`` and ``omniglot_curves.png``; returns every row. Also how
    ``benchmarks/pretrain.py`` records its rows, so the one file holds every Omniglot row."""
    results_path = out / "omniglot.json"
    # Re-read under a lock: several invocations may run side by side (one thread each).
    with open(out / ".omniglot.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows = json.loads(results_path.read_text())["rows"] if results_path.exists() else []
        names = {row["name"] for row in new_rows}
        rows = [r for r in rows if r["name"] not in names] + new_rows
        atomic_write_bytes(results_path, json.dumps({"rows": rows}, indent=1).encode())
        write_table(rows, out)
        plot_curves(rows, out)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("configs", nargs="+", type=Path)
    parser.add_argument("--minutes", type=float, default=20.0, help="training budget per row")
    parser.add_argument("--runs", type=Path, default=Path("runs/omniglot-bench"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--eval-episodes", type=int, default=None,
                        help="test episodes per row (default: the config's, 1000)")
    parser.add_argument("--eval-only", action="store_true",
                        help="train nothing: evaluate the run under --runs trained with the "
                             "same training section (e.g. 20-way rows of 5-way-trained models)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="config override for every row, e.g. "
                        "train.workers=1 (recorded in the row's command)")
    parser.add_argument("--tag", default="",
                        help="suffix for row and run names, e.g. '3min' to add a shorter-budget "
                             "row beside an existing one")
    args = parser.parse_args()
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    args.out.mkdir(parents=True, exist_ok=True)
    trained_runs: dict[str, tuple[Path, dict]] = {}
    for config_path in args.configs:
        row = run_row(config_path, args.minutes, args.runs, args.resume, args.data_root, command,
                      trained_runs, args.eval_episodes, args.tag, args.eval_only,
                      tuple(args.overrides))
        record_rows([row], args.out)
        print(f"{row['name']}: {row['accuracy']:.2f} ± {row['ci95']:.2f}% "
              f"(paper {row['paper']}) after {row['steps']} steps, {row['train_minutes']:.1f} min")


if __name__ == "__main__":
    main()
