"""Few-shot intent classification table (CLINC150, BANKING77): train, evaluate, tabulate.

    python benchmarks/text.py configs/text/protonet_clinc150_5w1s.yaml [...] --minutes 4 --oos
    python benchmarks/text.py configs/text/*wordllama*.yaml --minutes 4   # pretrained WordLlama
                                                    # (pip install 'attnmeta[wordllama]')

For each config: meta-train (stopping with a checkpoint when ``--minutes`` of training time
are spent, or at the config's steps; configs that differ only in their test episodes share
one trained model), evaluate on 1000 seeded meta-test episodes, and, with ``--oos``, the
CLINC150 rows also with out-of-scope queries (threshold chosen on meta-val). Rows go to
``benchmarks/results/text.json`` (rows of earlier invocations are kept); ``text.md`` is
rewritten from it. ``--attention RUN`` draws that run's token-level attention picture into
``text_attention.png``. A killed invocation resumes its rows with ``--resume``.
``--untrained-baseline`` adds, for each WordLlama config (its run trained first), the
zero-training row on the same test episodes: cosine prototypes over WordLlama's frozen,
mean-pooled vectors, the baseline a pretrained-encoder row has to beat.
Pretrain configs (``kind: pretrain``, ``configs/text/pretrain_*.yaml``) train one classifier
over the training intents and are evaluated as cosine prototypes over the encoder;
``--shapes 5w1s 5w5s 10w5s`` evaluates every config's model on each of those test episode
shapes (one row each), and their rows keep the run's validation curve, drawn in
``text_pretrain_curves.png``. ``--set KEY=VALUE`` and ``--tag`` as in ``omniglot.py``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shlex
import shutil
import sys
from dataclasses import asdict
from pathlib import Path


from attnmeta.machine import describe_machine
from attnmeta.checkpoint import latest_checkpoint
from attnmeta.runs.config import EpisodeConfig, load_config
from attnmeta.runs.evaluation import evaluate_checkpoint
from attnmeta.runs.episodic import load_run
from attnmeta.runs.kinds import train_config
from omniglot import training_key  # benchmarks/ is on sys.path when this script runs
from pretrain import validation_curve

PRETRAINED = "pretrain (cosine prototypes)"  # the learner named in a pretrain run's rows
TEST_SHAPE_OF_CURVES = "5-way 1-shot"  # what configs/text/pretrain_*.yaml evaluate in training



def encoder_label(config) -> str:
    """How the row's encoder was made, for the results file."""
    model = config.model
    if model.backbone == "wordllama":
        return (f"wordllama l2_supercat 256-d, pretrained, "
                f"{'fine-tuned' if model.tune_embeddings else 'frozen'}"
                f"{', linear map' if model.project else ''}, depth={model.depth}")
    return f"{model.backbone} d={model.hidden} depth={model.depth}, from scratch"


def method(row: dict) -> str:
    """The learner, with the backbone when it is not the from-scratch transformer."""
    backbone = row.get("backbone", "text_transformer")
    if backbone == "text_transformer":
        return row["learner"]
    encoder = row.get("encoder", "")
    tuned = " (embeddings fine-tuned)" if ", fine-tuned," in encoder else ""
    mapped = " + linear map" if ", linear map," in encoder else ""
    depth = encoder.rsplit("depth=", 1)[-1] if "depth=" in encoder else "0"
    blocks = "" if depth == "0" else f" + {depth} block{'s' if depth != '1' else ''}"
    return f"{row['learner']} + {backbone}{tuned}{mapped}{blocks}"


def trained_record(run_dir: Path) -> dict:
    """Steps, training seconds and command of a finished run, from its last checkpoint."""
    latest = latest_checkpoint(run_dir)
    if latest is None:
        raise SystemExit(f"--eval-only: {run_dir} holds no checkpoint; train it first")
    record = json.loads(latest.read_text())
    return {"steps": record["step"], "train_seconds": record.get("elapsed_s", 0.0),
            "command": record.get("command", ""),
            "budget_minutes": record["config"]["train"]["max_minutes"]}


def shaped_config(config_path: Path, shape: str | None, minutes: float, tag: str,
                  overrides: tuple[str, ...], data_root: str | None):
    """The config of one row: ``--set`` applied, tested on ``shape`` ('10w5s'; None: the
    config's own), named with the tag, and the shape when it is not the config's own."""
    config = load_config(config_path, [f"train.max_minutes={minutes}", *overrides])
    if tag:
        config.name = f"{config.name}_{tag}"
    if data_root is not None:
        config.data.root = data_root
    if shape is not None:
        n_way, k_shot = (int(part) for part in shape.rstrip("s").split("w"))
        test = config.data.test
        if (n_way, k_shot) != (test.n_way, test.k_shot):
            config.data.test = EpisodeConfig(n_way, k_shot, test.q_query, test.within)
            config.name = f"{config.name}_{shape}"
    return config


def run_row(config, config_path: Path, minutes: float, runs: Path, resume: bool,
            data_root: str | None, command: str, trained_runs: dict[str, tuple[Path, dict]],
            eval_episodes: int | None, oos: bool, eval_only: bool = False) -> dict:
    key = training_key(config)
    if key in trained_runs:
        run_dir, trained = trained_runs[key]
    else:
        run_dir = runs / config.name
        if eval_only:
            trained = trained_record(run_dir)
        else:
            trained = asdict(train_config(config, run_dir, resume=resume, progress=True,
                                          command=command))
            trained["command"] = command
        trained_runs[key] = (run_dir, trained)
    result = evaluate_checkpoint(run_dir, n_way=config.data.test.n_way, episodes=eval_episodes,
                                 k_shot=config.data.test.k_shot, command=command,
                                 progress=True, data_root=data_root).to_dict()
    pretrained = config.kind == "pretrain"
    row = {
        "name": config.name, "config": str(config_path), "dataset": config.data.dataset,
        "learner": PRETRAINED if pretrained else config.learner.name,
        "n_way": result["n_way"], "k_shot": result["k_shot"],
        "q_query": result["q_query"],
        "accuracy": 100 * result["accuracy"], "ci95": 100 * result["ci95"],
        "episodes": result["episodes"], "episode_seed": result["episode_seed"],
        "train_seed": config.seed, "steps": trained["steps"],
        "planned_steps": config.train.steps, "train_minutes": trained["train_seconds"] / 60,
        "budget_minutes": trained.get("budget_minutes", minutes), "trained_in": run_dir.name, "command": command,
        "trained_by": trained["command"],
        "machine": describe_machine(), "encoder": encoder_label(config),
        "backbone": config.model.backbone,
    }
    if pretrained:  # (training seconds, validation accuracy) of each train.eval_every
        row["curve"] = [(0.0, untrained_validation(run_dir, data_root)),
                        *validation_curve(run_dir, 0.0)]
    if oos and config.data.dataset == "clinc150":
        from attnmeta.runs.out_of_scope import evaluate_out_of_scope

        found = evaluate_out_of_scope(run_dir, episodes=eval_episodes,
                                      n_way=config.data.test.n_way,
                                      k_shot=config.data.test.k_shot, command=command,
                                      data_root=data_root).to_dict()
        row["oos"] = {key: found[key] for key in (
            "score", "threshold", "threshold_episodes", "oos_per_episode", "episodes",
            "in_scope_accuracy", "in_scope_ci95", "oos_recall", "oos_recall_ci95",
            "val_in_scope_accuracy", "val_oos_recall")}
    return row


def untrained_encoder(config):
    """WordLlama's plain unit-length vectors (depth 0, frozen, no map) for ``config`` (a copy
    of it is changed, not ``config``)."""
    from attnmeta.runs.build import build_backbone

    config = copy.deepcopy(config)
    model = config.model
    model.depth, model.tune_embeddings, model.normalize, model.project = 0, False, True, False
    return build_backbone(config, 0)


def untrained_validation(run_dir: Path, data_root: str | None) -> float:
    """What the run's ``train.eval_every`` evaluation would have read before its first step
    (an imprinted classifier over an identity map: WordLlama's cosine prototypes)."""
    from attnmeta.learners import ProtoNet
    from attnmeta.runs.build import load_split
    from attnmeta.runs.evaluation import in_training_evaluation
    from attnmeta.runs.folder import read_run
    from attnmeta.runs.tokenizer import load_run_tokenizer

    config = read_run(run_dir, "pretrain")[2]
    if data_root is not None:
        config.data.root = data_root
    name = config.train.eval_split
    split = load_split(config, name, load_run_tokenizer(run_dir))
    evaluate = in_training_evaluation(ProtoNet(untrained_encoder(config), "cosine"), split,
                                      name, config.data.test, config.train.eval_episodes,
                                      config.eval.seed)  # what the run logs at eval_every
    return evaluate()[f"{name}_accuracy"]


def untrained_row(config, config_path: Path, trained_in: Path, data_root: str | None,
                  command: str, eval_episodes: int | None) -> dict:
    """The zero-training baseline of a WordLlama config: ProtoNets with cosine distances over
    the untrained, frozen WordLlama encoder (depth 0), on the test episodes of the run in
    ``trained_in`` (the same split, shape, seed and tokenizer)."""
    from attnmeta.metrics import summarize
    from attnmeta.learners import ProtoNet
    from attnmeta.runs.build import load_split
    from attnmeta.runs.evaluation import episode_accuracies
    from attnmeta.runs.tokenizer import load_run_tokenizer

    if config.model.backbone != "wordllama":
        raise SystemExit(f"--untrained-baseline: {config_path} does not use model.backbone="
                         "wordllama")
    tokenizer = load_run_tokenizer(trained_in)  # the trained run's, as its rows read
    learner = ProtoNet(untrained_encoder(config), "cosine")
    test = config.data.test
    episodes = eval_episodes or config.eval.episodes
    summary = summarize(episode_accuracies(learner, load_split(config, config.eval.split,
                                                               tokenizer),
                                           test, episodes, config.eval.seed, progress=True))
    return {
        "name": f"wordllama_untrained_{config.data.dataset}_{test.n_way}w{test.k_shot}s",
        "config": str(config_path), "dataset": config.data.dataset,
        "learner": "protonet (cosine), untrained", "n_way": test.n_way, "k_shot": test.k_shot,
        "q_query": test.q_query, "accuracy": 100 * summary.mean, "ci95": 100 * summary.ci95,
        "episodes": episodes, "episode_seed": config.eval.seed, "train_seed": config.seed,
        "steps": 0, "planned_steps": 0, "train_minutes": 0.0, "budget_minutes": 0.0,
        "trained_in": "—", "command": command, "trained_by": command,
        "machine": describe_machine(), "encoder": encoder_label(config),
        "backbone": "wordllama"}


PUBLISHED_NOTES = """\
## Published episodic figures (not like-for-like)

Every published episodic result we found on these data sets starts from a **pretrained**
BERT-family encoder (~110M parameters, pretrained on billions of words); ours is a 2-block,
64-wide transformer (~0.33M parameters, most of them token embeddings) trained **from
scratch** on the meta-train intents' 15,000 (CLINC150) or 8,491 (BANKING77) sentences on a
shared 2-core CPU, so the gap below measures pretraining, not the meta-learners. Shots and
class splits differ too (below); no row here is a like-for-like comparison.

{published}
"""


def command_labels(rows: list[dict]) -> dict[str, str]:
    """A short label (A, B, ...) for each distinct command, in order of first use."""
    labels: dict[str, str] = {}
    for row in rows:
        for command in (row.get("trained_by", row["command"]), row["command"]):
            labels.setdefault(command, chr(ord("A") + len(labels)))
    return labels


def minutes(value: float) -> str:
    """Training minutes as the table shows them: seconds-long runs keep two decimals."""
    return f"{value:.1f}" if value >= 0.1 or value == 0 else f"{value:.2f}"


def commands(row: dict, labels: dict[str, str]) -> str:
    """The row's command label; the training command's too when another one trained it."""
    trained_by = row.get("trained_by", row["command"])
    if trained_by == row["command"]:
        return labels[row["command"]]
    return f"trained {labels[trained_by]}, evaluated {labels[row['command']]}"


def write_table(rows: list[dict], out: Path, published: str, attention: str | None) -> None:
    lines = [
        "# Few-shot intent classification (CLINC150, BANKING77)",
        "",
        "Accuracy (%) ± 95% CI over 1000 seeded meta-test episodes (15 queries per class) on "
        "intents never seen in training. Class splits are fixed (`attnmeta.tasks.clinc150`: "
        "100 / 20 / 30 intents stratified over the 10 domains; `attnmeta.tasks.banking77`: "
        "50 / 10 / 17 intents); a byte-level BPE tokenizer (4000 ids) is trained on the "
        "meta-train sentences only. The encoder is a 2-block transformer (width 64, 4 heads, "
        "masked-mean pooling) trained **from scratch**: no pretrained weights. Each trained "
        "model stops when its budget of training time is spent ('train time', wall clock on "
        "this repository's 2-core CPU, evaluation excluded); these runs **shared the 2 cores "
        "with other jobs**, so they ran single-threaded (`OMP_NUM_THREADS=1`: two threads "
        "per process on an oversubscribed CPU were about 2.5x slower) and the steps reached are a "
        "lower bound for the budget. Rows whose configs differ only in the test episodes "
        "evaluate one trained model ('trained in'). Methods marked `+ wordllama` instead "
        "encode with WordLlama's pretrained 256-wide token embeddings (frozen, mean-pooled) "
        "and its Llama 2 tokenizer, from the `wordllama` wheel "
        "(`configs/text/*wordllama*.yaml`); `(embeddings fine-tuned)` trains that table too, "
        "`+ 1 block` adds a transformer block over the tokens that starts as the identity. "
        "The `untrained` rows are the zero-training baseline on the same episodes: cosine "
        "prototypes over WordLlama's unit-length vectors (`--untrained-baseline`). The "
        "`pretrain (cosine prototypes) + wordllama + linear map` rows come from one pretrain "
        "run per data set (`kind: pretrain`, `configs/text/pretrain_wordllama_*.yaml`): a "
        "256 x 256 linear map over WordLlama's frozen unit vectors, started at the identity, "
        "trained for one epoch as a cosine classifier over all training intents (imprinted "
        "start), then tested as cosine prototypes over the mapped vectors; `feat + "
        "wordllama + linear map` trains FEAT's head on the cached features of that frozen "
        "encoder (its train time is FEAT's: the pretraining before it took 3-5 s).",
        "",
        "| data set | method | setting | accuracy (%) | trained in | train steps (of planned) "
        "| train time (min) | episodes (seed) | command (below) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    order = {"protonet": 0, "matching": 1, "feat": 2, "incontext": 3, "maml": 4, "fomaml": 5,
             "reptile": 6}
    ranked = sorted(rows, key=lambda r: (r["dataset"], r.get("backbone", "text_transformer")
                                         != "text_transformer", order.get(r["learner"], 9),
                                         r["n_way"], r["k_shot"]))
    labels = command_labels(ranked)
    for row in ranked:
        lines.append(
            f"| {row['dataset']} | {method(row)} | {row['n_way']}-way {row['k_shot']}-shot | "
            f"{row['accuracy']:.2f} ± {row['ci95']:.2f} | {row['trained_in']} | "
            f"{row['steps']} ({row['planned_steps']}) | {minutes(row['train_minutes'])} | "
            f"{row['episodes']} ({row['episode_seed']}) | {commands(row, labels)} |")
    with_oos = [row for row in ranked if "oos" in row]
    if with_oos:
        lines += [
            "", "## Out-of-scope detection (CLINC150)", "",
            "Each meta-test episode also holds out-of-scope queries drawn from CLINC150's "
            "`oos_test` (as many as one class's queries); a query is rejected when its score "
            "(maximum softmax probability, or maximum logit: for ProtoNets minus the squared "
            "distance to the nearest prototype) is below a threshold; the score and threshold "
            "are chosen on 500 meta-val episodes (meta-val intents + `oos_val`) to maximise "
            "in-scope accuracy + out-of-scope recall (`attnmeta eval RUN --oos`). In-scope accuracy counts a query right only if it "
            "gets its intent and is not rejected (Larson et al. 2019).", "",
            "| method | setting | in-scope accuracy (%) | out-of-scope recall (%) | score >= "
            "threshold (chosen on val) | accuracy without OOS (%) |",
            "|---|---|---|---|---|---|",
        ]
        for row in with_oos:
            found = row["oos"]
            lines.append(
                f"| {method(row)} | {row['n_way']}-way {row['k_shot']}-shot + "
                f"{found['oos_per_episode']} OOS | {100 * found['in_scope_accuracy']:.2f} ± "
                f"{100 * found['in_scope_ci95']:.2f} | {100 * found['oos_recall']:.2f} ± "
                f"{100 * found['oos_recall_ci95']:.2f} | {found.get('score', 'max_softmax')} >= "
                f"{found['threshold']:.4g} | {row['accuracy']:.2f} |")
    machines = sorted({row["machine"] for row in rows})
    lines += ["", "Commands (run from the repository root):", ""]
    lines += [f"- {label}: `{command}`" for command, label in labels.items()]
    lines += ["", f"Machine: {'; '.join(machines)}.", "", published]
    if plot_pretrain_curves(rows, out / "text_pretrain_curves.png"):
        lines += ["## Pretraining over the training intents: validation against time", "",
                  "Each pretrain run evaluates cosine prototypes on the validation intents "
                  "every 20 steps (300 episodes, 5-way 1-shot; the point at 0 s is the "
                  "untrained start, WordLlama's own vectors). The `4epochs` runs train the "
                  "same config four times as long: the steps the configs keep (one epoch) "
                  "were chosen on these validation curves, never on the test intents.", "",
                  "![validation accuracy against training seconds](text_pretrain_curves.png)",
                  ""]
    if attention:
        lines += ["## Token-level attention", "", attention, "",
                  "![token-level attention of a CLINC150 query](text_attention.png)", ""]
    (out / "text.md").write_text("\n".join(lines))


def plot_pretrain_curves(rows: list[dict], out: Path) -> bool:
    """Validation accuracy (``train.eval_every`` episodes of the val intents; the point at
    0 s is the untrained start) against training seconds, one line a pretrain run; False
    when no row holds a curve."""
    curves = {row["trained_in"]: row for row in rows if row.get("curve")}
    if not curves:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for ax, dataset in zip(axes, ("clinc150", "banking77")):
        for run, row in sorted(curves.items()):
            if row["dataset"] == dataset:
                ax.plot([t for t, _ in row["curve"]], [100 * a for _, a in row["curve"]],
                        marker=".", label=f"{run} ({row['planned_steps']} steps)")
        ax.set_title(f"{dataset}: val intents, {TEST_SHAPE_OF_CURVES}")
        ax.set_xlabel("training seconds on this CPU (1 thread)")
        ax.set_ylabel("validation accuracy %")
        if ax.get_lines():
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out, dpi=120)
    plt.close(figure)
    return True


def draw_attention(run_dir: Path, out: Path, command: str) -> str:
    """The first query's picture of `attnmeta viz RUN` as ``out/text_attention.png``."""
    from attnmeta.viz.text import write_text_attention_maps

    run = load_run(run_dir)
    config, test = run.config, run.config.data.test
    temporary = out / ".text_attention"
    paths = write_text_attention_maps(run.learner, run.split("test"), test.n_way, test.k_shot,
                                      test.q_query, 0, temporary, run.tokenizer, queries=1)
    shutil.move(str(paths[0]), out / "text_attention.png")
    shutil.rmtree(temporary, ignore_errors=True)
    return (f"Made by `{command}` (the same picture as `attnmeta viz {run_dir} "
            f"--episode-seed 0`, first query): {config.learner.name} on episode 0 of seed 0 "
            f"of the meta-test intents, {config.data.test.n_way}-way "
            f"{config.data.test.k_shot}-shot.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("configs", nargs="*", type=Path,
                        help="configs to run (none: only rewrite text.md from text.json)")
    parser.add_argument("--minutes", type=float, default=4.0,
                        help="training budget per trained model")
    parser.add_argument("--runs", type=Path, default=Path("runs/text-bench"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--oos", action="store_true",
                        help="also evaluate the CLINC150 rows with out-of-scope queries")
    parser.add_argument("--attention", default=None, metavar="RUN_NAME",
                        help="draw text_attention.png from this run under --runs")
    parser.add_argument("--eval-only", action="store_true",
                        help="evaluate the runs already under --runs again, no training")
    parser.add_argument("--untrained-baseline", action="store_true",
                        help="also the zero-training row of each WordLlama config")
    parser.add_argument("--eval-episodes", type=int, default=None,
                        help="test episodes per row (default: the config's, 1000)")
    parser.add_argument("--shapes", nargs="+", default=[None], metavar="NwKs",
                        help="test episode shapes of every config's model, e.g. 5w1s 10w5s "
                             "(default: each config's data.test)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="config override for every row (recorded "
                        "in the row's command)")
    parser.add_argument("--tag", default="", help="suffix for row and run names")
    args = parser.parse_args()
    threads = os.environ.get("OMP_NUM_THREADS")
    command = (f"OMP_NUM_THREADS={threads} " if threads else "") + "python " + " ".join(
        shlex.quote(a) for a in sys.argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "text.json"
    saved = json.loads(results_path.read_text()) if results_path.exists() else {}
    rows, attention = saved.get("rows", []), saved.get("attention")
    published = PUBLISHED_NOTES.format(published=PUBLISHED_TABLE)
    trained_runs: dict[str, tuple[Path, dict]] = {}
    for config_path, shape in ((c, s) for c in args.configs for s in args.shapes):
        config = shaped_config(config_path, shape, args.minutes, args.tag,
                               tuple(args.overrides), args.data_root)
        row = run_row(copy.deepcopy(config), config_path, args.minutes, args.runs,
                      args.resume, args.data_root, command, trained_runs, args.eval_episodes,
                      args.oos, args.eval_only)
        rows = [r for r in rows if r["name"] != row["name"]] + [row]
        results_path.write_text(json.dumps({"rows": rows, "attention": attention}, indent=1))
        write_table(rows, args.out, published, attention)
        print(f"{row['name']}: {row['accuracy']:.2f} ± {row['ci95']:.2f}% after {row['steps']} "
              f"steps, {row['train_minutes']:.1f} min")
        if args.untrained_baseline:
            row = untrained_row(config, config_path, args.runs / row["trained_in"],
                                args.data_root, command, args.eval_episodes)
            rows = [r for r in rows if r["name"] != row["name"]] + [row]
            results_path.write_text(json.dumps({"rows": rows, "attention": attention},
                                               indent=1))
            print(f"{row['name']}: {row['accuracy']:.2f} ± {row['ci95']:.2f}%")
    if args.attention:
        attention = draw_attention(args.runs / args.attention, args.out, command)
        results_path.write_text(json.dumps({"rows": rows, "attention": attention}, indent=1))
    write_table(rows, args.out, published, attention)


PUBLISHED_TABLE = """\
| source | data set and protocol | encoder | 5-way accuracy (%) |
|---|---|---|---|
| Zhang et al., NAACL 2022, Table 5 ([paper and code](https://github.com/fanolabs/isoIntentBert-main)) | BANKING77: all 77 intents are test classes (their training intents come from CLINC150's other domains), 5-way **2-shot / 10-shot**, 5 queries per class, 500 episodes, logistic regression on frozen sentence vectors | BERT-base, pretrained, no intent training ("BERT-Freeze") | 57.10 / 84.30 |
| same | same | BERT-base fine-tuned on CLINC150 intents (IntentBERT, Zhang et al., Findings of EMNLP 2021) | 82.40 / 91.80 |
| same | same | BERT-base, IntentBERT + both isotropy regularisers (their best BERT) | 85.21 / 94.68 |
| same (Table 6) | same | RoBERTa-base + both regularisers (their best) | 87.96 / 95.85 |
| Dopierre et al., ACL 2021 ([ProtAugment](https://arxiv.org/abs/2105.12995), [splits](https://github.com/tdopierre/ProtAugment)) | CLINC150 and BANKING77, class splits 50/50/50 and 25/25/27, 5-way 1-shot and 5-shot | BERT-base further pretrained (masked LM) on each data set, ProtoNets | not quoted: we could not retrieve the paper's table in this offline session |

The nearest reading: our BANKING77 rows use fewer shots than theirs (1 vs 2, 5 vs 10), on 17
test intents instead of 77, with the learner's own classifier instead of logistic
regression. With those caveats, our from-scratch encoders (71.0-71.5% at 1 shot, 82.1-85.0%
at 5 shots) sit above a frozen pretrained BERT that had no intent training (57.1% at 2
shots, 84.3% at 10) and well below BERT / RoBERTa fine-tuned on intent data (82.4-88.0% at
2 shots, 91.8-95.9% at 10): what pretraining on billions of words adds. No published
episodic CLINC150 figure is quoted: ProtAugment's (CLINC150, 5-way 1- and 5-shot, pretrained
BERT) could not be retrieved here, and the CLINC150 rows of Zhang et al. are validation
domains used for model selection. For out-of-scope detection, the DNNC README
([salesforce/DNNC-few-shot-intent](https://github.com/salesforce/DNNC-few-shot-intent),
Zhang et al., EMNLP 2020) shows an example run of its NLI-pretrained RoBERTa on CLINC150's
banking domain (15 intents, 5 examples each, dev set, not episodic): in-domain accuracy
91.9% and out-of-scope recall 97.6% at a threshold of 0.7."""

if __name__ == "__main__":
    main()
