"""Two trained runs on the same seeded Omniglot test episodes: each one's accuracy and the
difference between them, paired by episode, with its own 95% CI — issue 13's "at equal total
training time an attention fusion beats ProtoNet; say by how much, with CIs, on the same
episodes".

    python benchmarks/paired.py runs/incontext_frozen_20w1s runs/pretrain_conv4_bf16_equal \
        [--episodes 1000] [--data-root ../shared/data] [--out benchmarks/results]
        [--second-as-prototypes] [--one-to-one first|second|both]

Either run may be a pretrain run (prototypes over its frozen encoder) or an episodic one.
Both read the same test split (checked: the same classes and labels, so the same seed draws
the same episodes) in every setting both can take. Two methods tend to fail on the same hard
episodes, so the difference's interval is narrower than the two accuracies' intervals would
suggest: "ahead" below means that interval excludes zero. Training minutes include the
pretraining a run started from. Rows of earlier invocations are kept (keyed by the two runs
and the setting); writes ``paired.json``, ``paired.md`` and ``paired.png``.

``--second-as-prototypes``: the second run's encoder read as cosine prototypes of its
pooled features (the backbone under a relational learner's token map), for "the relational
learner against the prototypes of the same encoder" when the encoder trained with it (an
end-to-end run; give the same run twice). Its row names it ``<run>:prototypes``.

``--one-to-one first|second|both``: that run's queries are decided together by the
transductive balanced assignment (:mod:`attnmeta.assignment`; Lake's runs hold one query per
class) instead of one by one; its row names it ``<run>:one-to-one``. Give a run twice with
``--one-to-one first`` to measure what the assignment adds on the same episodes.

Each setting's row is written as soon as it is measured, so a stopped invocation keeps the
settings it finished (a rerun measures them again and replaces them).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from dataclasses import replace
from typing import Any, Callable, Sequence

import numpy as np
import torch

from attnmeta.checkpoint import read_checkpoint_record, resolve_checkpoint
from attnmeta.errors import AttnmetaError, InputError
from attnmeta.metrics import paired_difference, summarize
from attnmeta.files import atomic_write_bytes
from attnmeta.learners.protonet import ProtoNet
from attnmeta.machine import describe_machine
from attnmeta.assignment import ONE_TO_ONE
from attnmeta.runs.evaluation import (episode_accuracies, load_classes_run, requested_shape,
                                      takes_n_way)
from pretrain import LAKE_SETTINGS, PUBLISHED, SETTINGS, train_minutes  # benchmarks/ on sys.path


def training_commands(checkpoint: Path) -> list[str]:
    """The commands that trained ``checkpoint``'s run, its ``model.init`` run's first."""
    record = read_checkpoint_record(checkpoint)
    init = (record.get("inputs") or {}).get("init_checkpoint")
    earlier = training_commands(Path(init)) if init and Path(init).is_file() else []
    return earlier + [record.get("command", "")]


def row_key(row: dict) -> tuple:
    """What identifies a row across invocations: the two runs and the setting."""
    return row["first"], row["second"], row["n_way"], row["k_shot"], row["within"]


def verdict(row: dict) -> str:
    """Which run is ahead: the paired interval excludes zero, or a tie."""
    low = row["difference"] - row["difference_ci95"]
    high = row["difference"] + row["difference_ci95"]
    return ("first ahead" if low > 0 else "second ahead" if high < 0
            else "tie (the interval holds 0)")


def as_prototypes(run: Any, run_dir: Path) -> Any:
    """``run`` with its learner replaced by cosine prototypes (Chen et al. ICLR 2019) over
    the pooled features of its encoder's backbone; an InputError for a frozen run (its
    pretrain run is those prototypes already)."""
    if run.config.model.freeze:
        raise InputError(f"--second-as-prototypes with {run_dir}: expected a run whose encoder "
                         "trained (model.freeze: false); a frozen run's prototypes are its "
                         "model.init run's")
    encoder = run.learner.encoder
    backbone = encoder.backbone if run.learner.reads_spatial_tokens else encoder
    learner = ProtoNet(backbone, distance="cosine", temperature=0.1).eval()
    return replace(run, learner=learner, accuracy_name="protonet")


def compare(first_dir: Path, second_dir: Path, episodes: int, data_root: str | None,
            command: str, settings: Sequence[tuple[int, int, str]] | None = None,
            second_as_prototypes: bool = False, one_to_one: str = "none",
            on_row: Callable[[dict], None] = lambda row: None) -> list[dict]:
    """One row per setting (``(n_way, k_shot, within)``; default the four Omniglot ones, or
    Lake's for a run of that protocol) both runs take: accuracies on the same episodes and
    their paired difference (first − second), in %, each handed to ``on_row`` once measured.
    ``one_to_one``: ``"first"``, ``"second"`` or ``"both"`` runs decide their queries by the
    transductive balanced assignment. ValueError if the two runs read different test splits
    (the same seed would draw different episodes)."""
    first, second = (load_classes_run(run_dir, data_root) for run_dir in (first_dir, second_dir))
    first_name, second_name = first_dir.name, second_dir.name
    if second_as_prototypes:
        second, second_name = as_prototypes(second, second_dir), f"{second_dir.name}:prototypes"
    assigned = (one_to_one in ("first", "both"), one_to_one in ("second", "both"))
    first_name += ":one-to-one" if assigned[0] else ""
    second_name += ":one-to-one" if assigned[1] else ""
    split_name = first.config.eval.split
    splits = [run.learner_split(split_name) for run in (first, second)]
    if (not torch.equal(splits[0].labels, splits[1].labels)
            or list(splits[0].class_names) != list(splits[1].class_names)):
        raise InputError(f"{first_dir} and {second_dir} read different {split_name} "
                         "splits: expected the same data set, protocol and split, so that "
                         "the same seed draws the same episodes")
    seed = first.config.eval.seed
    lake = first.config.data.protocol == "lake"
    rows = []
    for n_way, k_shot, within in settings or (LAKE_SETTINGS if lake else SETTINGS):
        shape = requested_shape(first.config, n_way, k_shot, within)
        if not all(takes_n_way(run.learner, run.config, n_way) for run in (first, second)):
            continue
        values = [episode_accuracies(run.learner, split, shape, episodes, seed,
                                     one_to_one=decided_together)
                  for run, split, decided_together in zip((first, second), splits, assigned)]
        one, other = summarize(values[0]), summarize(values[1])
        difference = paired_difference(values[0], values[1])
        row = {"first": first_name, "second": second_name,
               "first_learner": first.learner.display_name,
               "second_learner": second.learner.display_name,
               "first_step": first.record["step"], "second_step": second.record["step"],
               "first_minutes": train_minutes(first_dir),
               "second_minutes": train_minutes(second_dir),
               "n_way": n_way, "k_shot": k_shot, "within": within, "q_query": shape.q_query,
               "episodes": episodes, "episode_seed": seed,
               "first_accuracy": 100 * one.mean, "first_ci95": 100 * one.ci95,
               "second_accuracy": 100 * other.mean, "second_ci95": 100 * other.ci95,
               "difference": 100 * difference.mean, "difference_ci95": 100 * difference.ci95,
               "transductive": {name: ONE_TO_ONE for name, decided_together
                                in zip((first_name, second_name), assigned) if decided_together},
               "first_better_episodes": int(np.sum(values[0] > values[1])),
               "second_better_episodes": int(np.sum(values[0] < values[1])),
               "published": PUBLISHED.get((n_way, k_shot, within), (None,))[0],
               "trained_by": {run_dir.name: training_commands(Path(run.record["path"]))
                              for run_dir, run in ((first_dir, first), (second_dir, second))},
               "command": command, "machine": describe_machine()}
        row["verdict"] = verdict(row)
        print(f"{n_way}w{k_shot}s {within}: {row['first_accuracy']:.2f} vs "
              f"{row['second_accuracy']:.2f}, difference {row['difference']:+.2f} ± "
              f"{row['difference_ci95']:.2f} ({row['verdict']})", flush=True)
        rows.append(row)
        on_row(row)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["# Two runs on the same test episodes (paired differences)", "",
             "Omniglot test episodes drawn by the same seed for both runs; accuracy % ± 95% CI "
             "over the episodes; the difference is first − second, paired by episode, with "
             "the 95% CI of that difference (normal approximation, as the accuracies). "
             "\"ahead\": the difference's interval excludes 0. Training minutes include "
             "pretraining. A run named `<run>:one-to-one` decided each episode's queries "
             "together (balanced assignment: transductive); every other run is inductive.", "",
             "| first (train min) | second (train min) | setting | first | second | "
             "difference | episodes first / second better | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        setting = f"{row['n_way']}w{row['k_shot']}s" + (
            "" if row["within"] == "none" else f" within {row['within']}")
        lines.append(
            f"| {row['first']} ({row['first_minutes']:.1f}) | {row['second']} "
            f"({row['second_minutes']:.1f}) | {setting} | {row['first_accuracy']:.2f} ± "
            f"{row['first_ci95']:.2f} | {row['second_accuracy']:.2f} ± {row['second_ci95']:.2f}"
            f" | {row['difference']:+.2f} ± {row['difference_ci95']:.2f} | "
            f"{row['first_better_episodes']} / {row['second_better_episodes']} of "
            f"{row['episodes']} | {row['verdict']} |")
    commands = sorted({row["command"] for row in rows})
    trained = sorted({c for row in rows for cs in row["trained_by"].values() for c in cs if c})
    machines = sorted({row["machine"] for row in rows})
    lines += ["", "Commands:", "", *(f"- `{c}`" for c in commands), "", "Trained by:", "",
              *(f"- `{c}`" for c in trained), "", f"Machine: {'; '.join(machines)}."]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], out: Path) -> None:
    """The paired difference ± its 95% CI for each pair and setting, against zero."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['first']} − {r['second']}\n{r['n_way']}w{r['k_shot']}s"
              + ("" if r["within"] == "none" else f" within {r['within']}") for r in rows]
    figure, ax = plt.subplots(figsize=(7, 0.55 * len(rows) + 1.4))
    positions = np.arange(len(rows))[::-1]
    ax.errorbar([r["difference"] for r in rows], positions,
                xerr=[r["difference_ci95"] for r in rows], fmt="o", capsize=4)
    ax.axvline(0, color="grey", linestyle="--")
    ax.set_yticks(positions, labels, fontsize=7)
    ax.set_xlabel("accuracy difference, percentage points (paired 95% CI)")
    ax.grid(alpha=0.3, axis="x")
    figure.tight_layout()
    figure.savefig(out, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--data-root", default=None,
                        help="folder holding omniglot/ (default: $ATTNMETA_DATA, as the runs)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--second-as-prototypes", action="store_true",
                        help="the second run's encoder as cosine prototypes (see above)")
    parser.add_argument("--one-to-one", choices=("none", "first", "second", "both"),
                        default="none", help="runs whose queries the transductive balanced "
                        "assignment decides (see above)")
    args = parser.parse_args()
    try:
        evaluate_and_record(args, "python " + " ".join(shlex.quote(a) for a in sys.argv))
    except AttnmetaError as error:  # bad input: one line; a bug keeps its traceback
        raise SystemExit("Error: " + " ".join(str(error).split()))


def evaluate_and_record(args: argparse.Namespace, command: str) -> None:
    """Compare the two runs and merge the rows into ``paired.{json,md,png}`` under --out."""
    # what would fail after the evaluations fails before them: the episodes, the runs, --out
    if args.episodes < 1:
        raise InputError(f"--episodes {args.episodes}: expected an integer >= 1")
    for run_dir in (args.first, args.second):
        resolve_checkpoint(run_dir)
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {args.out} is a file: expected a folder for the results")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "paired.json"

    def record(row: dict) -> None:
        # read at each row: another invocation may have written rows while this one evaluated
        saved = json.loads(path.read_text()) if path.is_file() else []
        merged = {row_key(r): r for r in saved + [row]}
        ordered = [merged[k] for k in sorted(merged)]
        atomic_write_bytes(path, json.dumps(ordered, indent=1).encode())
        atomic_write_bytes(args.out / "paired.md", markdown(ordered).encode())
        plot(ordered, args.out / "paired.png")

    compare(args.first, args.second, args.episodes, args.data_root, command,
            second_as_prototypes=args.second_as_prototypes, one_to_one=args.one_to_one,
            on_row=record)
    print(f"wrote {path}, {args.out / 'paired.md'} and {args.out / 'paired.png'}")


if __name__ == "__main__":
    main()
