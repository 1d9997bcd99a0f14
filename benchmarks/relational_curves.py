"""Accuracy against training time for issue 31's runs: each run's validation curve (its
``train.eval_every`` evaluations, read from its ``log.jsonl``) after its pretraining run's
curve, against training minutes on this CPU, pretraining included; each run's test accuracy
(its own ``attnmeta eval`` on 1000 seeded episodes, written beside its checkpoints) as a
marker at its end; the goal as a line. No evaluation is run here.

    python benchmarks/relational_curves.py runs/r31/cross_transformer_finetuned_lake ... \\
        [--out benchmarks/results]

Two panels: runs of Lake et al.'s protocol (validation: within-alphabet 20-way 1-shot on
the 5 held-out background alphabets; test: the evaluation set, within alphabet) and of the
Vinyals split (validation: 20-way 1-shot episodes of the 100 validation characters; test:
20-way 1-shot). Writes ``relational_curves.png`` and ``relational_curves.md`` (each run's
minutes, best validation accuracy and test accuracy, and the commands).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from attnmeta.checkpoint import read_checkpoint_record, resolve_checkpoint
from attnmeta.files import atomic_write_bytes
from pretrain import PUBLISHED, train_minutes, validation_curve  # benchmarks/ on sys.path

GOALS = {"lake": (97.0, "goal 97 (BPL 96.7, people 95.5)"),
         "vinyals": (PUBLISHED[(20, 1, "none")][0], "goal 98.07 (TapNet, 20w1s)")}


def run_summary(run_dir: Path) -> dict:
    """The run's curve (its pretraining run's first, minutes from the start of that), its
    training minutes, best validation and test accuracy (None without an eval file)."""
    record = read_checkpoint_record(resolve_checkpoint(run_dir))
    config = record["config"]
    minutes = train_minutes(run_dir)
    own = validation_curve(run_dir, 60 * minutes - record.get("elapsed_s", 0.0))
    init = (config.get("model") or {}).get("init")
    before = validation_curve(Path(init), 0.0) if init else []
    test = [json.loads(path.read_text()) for path in sorted(run_dir.glob("eval_test_20w1s*.json"))]
    # the first test shape of a Lake run is within alphabet (its config's test episodes)
    test_accuracy = 100 * test[0]["accuracy"] if test else None
    return {"run": run_dir.name, "protocol": config["data"].get("protocol", "vinyals"),
            "learner": ("cosine prototypes" if config.get("kind") == "pretrain"
                        else config["learner"]["name"]), "minutes": minutes,
            "curve": [(t / 60, 100 * a) for t, a in before + own],
            "best_val": max((100 * a for _, a in own), default=None),
            "test_accuracy": test_accuracy, "init": init,
            "command": record.get("command", "")}


def plot(runs: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    protocols = [p for p in ("lake", "vinyals") if any(r["protocol"] == p for r in runs)]
    figure, axes = plt.subplots(1, len(protocols), figsize=(6.5 * len(protocols), 7.0),
                                squeeze=False)
    for ax, protocol in zip(axes[0], protocols):
        drawn = [r for r in runs if r["protocol"] == protocol]
        # tab10 repeats after 10 runs; tab20 keeps up to 20 runs of a panel apart
        colours = plt.get_cmap("tab10" if len(drawn) <= 10 else "tab20").colors
        for run, colour in zip(drawn, colours * (len(drawn) // len(colours) + 1)):
            minutes, accuracy = zip(*run["curve"]) if run["curve"] else ((), ())
            line, = ax.plot(minutes, accuracy, marker=".", color=colour,
                            label=f"{run['run']} (val)")
            if run["test_accuracy"] is not None:
                ax.plot([run["minutes"]], [run["test_accuracy"]], marker="*", markersize=12,
                        color=line.get_color(), linestyle="none",
                        label=f"{run['run']} test {run['test_accuracy']:.2f}")
        goal, text = GOALS[protocol]
        ax.axhline(goal, color="grey", linestyle="--", label=text)
        ax.axvline(60, color="grey", linestyle=":", label="60-minute budget")
        ax.set_title("Lake's protocol, within-alphabet 20-way 1-shot" if protocol == "lake"
                     else "Vinyals split, 20-way 1-shot")
        ax.set_xlabel("training minutes on this CPU (pretraining included)")
        ax.set_ylabel("accuracy % (curve: validation; star: test)")
        ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
        ax.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out, dpi=120)
    plt.close(figure)


def markdown(runs: list[dict], command: str) -> str:
    lines = ["# Issue 31: accuracy against training time", "",
             f"Drawn by `{command}` from the runs' logs (no evaluation here). Curves: "
             "validation accuracy every `train.eval_every` steps (200 episodes), after the "
             "pretraining run's own curve; stars: test accuracy of the run's selected "
             "checkpoint on 1000 seeded episodes (seed 1234). Minutes: training time on this "
             "CPU, one thread per run with two runs sharing the 2 cores, pretraining "
             "included, validation evaluations not counted.", "",
             "![accuracy against training minutes](relational_curves.png)", "",
             "| run | protocol | learner | minutes (with pretraining) | best val % | test % |",
             "|---|---|---|---|---|---|"]
    for run in runs:
        best = "—" if run["best_val"] is None else f"{run['best_val']:.2f}"
        test = "—" if run["test_accuracy"] is None else f"{run['test_accuracy']:.2f}"
        lines.append(f"| {run['run']} | {run['protocol']} | {run['learner']} | "
                     f"{run['minutes']:.1f} | {best} | {test} |")
    lines += ["", "Trained by:", "", *(f"- `{r['command']}`" for r in runs if r["command"])]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    runs = [run_summary(run_dir) for run_dir in args.runs]
    args.out.mkdir(parents=True, exist_ok=True)
    plot(runs, args.out / "relational_curves.png")
    atomic_write_bytes(args.out / "relational_curves.md", markdown(runs, command).encode())
    print(f"wrote {args.out / 'relational_curves.png'} and {args.out / 'relational_curves.md'}")


if __name__ == "__main__":
    main()
