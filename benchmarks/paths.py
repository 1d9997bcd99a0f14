"""Throughput of the paths a CPU user's time goes to beyond MAML: pretraining, feature
caching, attention heads on cached features, and a fitted classifier's fit and predict.

    python benchmarks/paths.py [--threads N] [--repeats 5] [--out benchmarks/results]

Every row is the best of ``--repeats`` timed runs after one warm-up, with random weights
(speed does not depend on them) and Omniglot shapes (1 x 28 x 28, Conv4 64 channels) unless
the row says otherwise. FLOPs are counted by ``torch.utils.flop_counter``; MFU is against
the best of three fixed measurements of the 3x3-convolution / GEMM peak of the row's
precision in the same process (:func:`attnmeta.speed.harness.stable_peak`), whose spread is
reported. The float32 pretraining rows are profiled, with what their convolution kernels
alone allow (:mod:`attnmeta.speed.bound`). Writes ``paths.json`` and ``paths.md``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from attnmeta.fewshot import FewShotClassifier, Preprocessing
from attnmeta.fewshot.classifier import _Source
from attnmeta.files import atomic_write_bytes
from attnmeta.learners import FEAT, MatchingNet, InContextClassifier, ProtoNet, MAML
from attnmeta.learners.pretraining import ClassBatch, SupervisedClassifier
from attnmeta.learners.frozen import FrozenFeatureLearner
from attnmeta.machine import describe_machine
from attnmeta.models import Conv4, FeatureHead, ResNet12
from attnmeta.runs.config import config_from_dict
from attnmeta.runs.features import embed_items
from attnmeta.speed.bound import (ConvolutionBound, convolution_bound, convolution_flops,
                                  describe_bound, operator_table)
from attnmeta.speed.harness import best_seconds, count_flops, stable_peak
from attnmeta.tasks import Episode
from attnmeta.train import forward_precision


def pretraining_row(repeats: int, peak: float, precision: str = "float32",
                    compiled: bool = False) -> dict:
    """One Adam step of supervised pretraining: batch 256, 4400 classes (Vinyals train),
    its forward in ``precision`` (train.precision); with ``compiled`` the encoder under
    ``torch.compile`` (inductor: batch norm, pooling and ReLU fused), its compile time
    (the first step less the best) in the row."""
    torch.manual_seed(0)
    learner = SupervisedClassifier(Conv4(1, 0, 64, 28, "running"), 64, 4400)
    optimizer = torch.optim.Adam(learner.parameters(), 1e-3)
    batch = ClassBatch(torch.rand(256, 1, 28, 28), torch.randint(0, 4400, (256,)))

    def loss() -> torch.Tensor:
        with forward_precision(learner, precision):
            return learner.training_step(batch).loss

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss().backward()
        optimizer.step()

    # before compiling: kernels bypass dispatch
    flops, conv_flops = convolution_flops(lambda: loss().backward())
    path = f"pretraining step (Conv4, batch 256, 4400 classes, Adam), {precision}"
    compiling: dict = {}
    if compiled:
        learner.encoder.compile()
        start = time.perf_counter()
        step()
        first_s = time.perf_counter() - start
    seconds = best_seconds(step, repeats)
    if compiled:
        compiling = {"compile_s": first_s - seconds}
        path += f", encoder under torch.compile (compiled in {compiling['compile_s']:.0f} s)"
    if precision == "float32":  # where the time goes, and what the convolutions allow
        bound, operators = convolution_bound(step, (flops, conv_flops), top=8)
        compiling.update(bound=bound.as_dict(), operators=operators)
    return {"path": path, "precision": precision, "rate": 256 / seconds, "unit": "images/s",
            "seconds": seconds, "gflops": flops / seconds / 1e9,
            "mfu": flops / seconds / 1e9 / peak, "compiled": compiled, **compiling}


def caching_row(repeats: int, peak: float) -> dict:
    """Embedding a split once with a frozen encoder (what model.freeze caches)."""
    torch.manual_seed(0)
    encoder = Conv4(1, 0, 64, 28, "running").eval()
    items = torch.rand(4096, 1, 28, 28)
    with torch.no_grad():
        flops = count_flops(lambda: encoder(items[:512])) * 8
    seconds = best_seconds(lambda: embed_items(encoder, items, 512), repeats)
    return {"path": "feature caching (frozen Conv4, 4096 images, batches of 512)",
            "rate": 4096 / seconds, "unit": "images/s", "seconds": seconds,
            "gflops": flops / seconds / 1e9, "mfu": flops / seconds / 1e9 / peak}


def head_rows(repeats: int) -> list[dict]:
    """One Adam step of an attention head on cached 64-d features: meta-batch 32 episodes
    of 20-way 1-shot with 15 queries per class."""
    rows = []
    torch.manual_seed(0)
    support_y = torch.arange(20).repeat(32, 1)
    query_y = torch.arange(20).repeat_interleave(15).repeat(32, 1)
    batch = Episode(torch.randn(32, 20, 64), support_y, torch.randn(32, 300, 64), query_y)
    heads = {"FEAT": FEAT(FeatureHead(64, 0), 64),
             "Matching Networks + FCE": MatchingNet(FeatureHead(64, 0), fce=True, feature_dim=64),
             "in-context learner": InContextClassifier(FeatureHead(64, 0), 64, d_model=128)}
    for name, learner in heads.items():
        optimizer = torch.optim.Adam(learner.parameters(), 1e-3)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            learner.training_step(batch).loss.backward()
            optimizer.step()

        seconds = best_seconds(step, repeats)
        rows.append({"path": f"{name} head on cached features (20w1s, 15 queries, meta-batch 32)",
                     "rate": 32 / seconds, "unit": "episodes/s", "seconds": seconds})
    return rows


def _classifier(learner, image_size: int = 28, channels: int = 1,
                precision: str = "float32") -> FewShotClassifier:
    config = config_from_dict({"name": "speed", "data": {"dataset": "image_folder",
                                                         "root": "/nonexistent",
                                                         "image_size": image_size,
                                                         "channels": channels}})
    return FewShotClassifier(learner, config, Preprocessing("image", image_size, channels),
                             _Source("-", "-", "-", 0), precision=precision)


def product_rows(repeats: int) -> list[dict]:
    """A fitted classifier (5-way 1-shot): fit, and predict one query from a tensor and from
    a PNG file (decode, resize, predict), and a batch of 64 queries."""
    torch.manual_seed(0)
    models = {
        "ProtoNet, Conv4 (running norm)": (_classifier(ProtoNet(
            Conv4(1, 0, 64, 28, "running")).eval()), 28, 1),
        "FEAT over a frozen Conv4": (_classifier(FrozenFeatureLearner(
            Conv4(1, 0, 64, 28, "running"), FEAT(FeatureHead(64, 0), 64)).eval()), 28, 1),
        "MAML, Conv4, 10 inner steps": (_classifier(MAML(
            Conv4(1, 5, 64, 28, "batch"), 0.4, 1, eval_steps=10).eval()), 28, 1),
        "ProtoNet, ResNet-12, 84 x 84 RGB": (_classifier(ProtoNet(
            ResNet12(3, 0, 64, "running")).eval(), 84, 3), 84, 3),
        # attnmeta adapt --precision bfloat16 (accuracy: inference_precision.md)
        "ProtoNet, Conv4 (running norm), bfloat16": (_classifier(ProtoNet(
            Conv4(1, 0, 64, 28, "running")).eval(), precision="bfloat16"), 28, 1),
        "ProtoNet, ResNet-12, 84 x 84 RGB, bfloat16": (_classifier(ProtoNet(
            ResNet12(3, 0, 64, "running")).eval(), 84, 3, "bfloat16"), 84, 3),
    }
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, (model, size, channels) in models.items():
            support = [(torch.rand(channels, size, size), f"c{i}") for i in range(5)]
            fit_seconds = best_seconds(lambda: model.fit(support), repeats)
            png = Path(folder) / f"query{size}.png"
            pixels = (np.random.default_rng(0).random((400, 300, 3)) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(png)
            one = torch.rand(1, channels, size, size)
            many = torch.rand(64, channels, size, size)
            rows.append({"path": f"fit 5-way 1-shot: {name}", "rate": 1 / fit_seconds,
                         "unit": "fits/s", "seconds": fit_seconds})
            for label, queries, count in (("one query (tensor)", one, 1),
                                          ("one query (a 400 x 300 PNG file)", [png], 1),
                                          ("64 queries (tensor)", many, 64)):
                seconds = best_seconds(lambda: model.predict_proba(queries), repeats)
                rows.append({"path": f"predict {label}: {name}", "rate": count / seconds,
                             "unit": "queries/s", "seconds": seconds,
                             "ms_per_query": 1000 * seconds / count})
    return rows


def markdown(result: dict) -> str:
    lines = [
        "# Throughput of the pretraining, caching, head and product paths", "",
        f"Command: `{result['command']}`  ", f"Machine: {result['machine']}  ",
        *(f"Peak, {peak['dtype']} (the better of a 4096³ GEMM and a 3×3 64→64 convolution, "
          f"best of {len(peak['runs'])} fixed measurements): {peak['peak_gflops']:.0f} GFLOP/s "
          "(runs: " + ", ".join(f"{run['peak_gflops']:.0f}" for run in peak["runs"])
          + f"; spread {peak['spread']:.0%}); MFU of a row is against its precision's peak.  "
          for peak in result["peaks"].values()),
        f"Best of {result['repeats']} timed runs per row, after one warm-up; random weights.",
        "",
        "| path | rate | ms | GFLOP/s | MFU |", "|---|---|---|---|---|"]
    for row in result["rows"]:
        ms = row.get("ms_per_query", 1000 * row["seconds"])
        gflops = f"{row['gflops']:.0f}" if "gflops" in row else "—"
        mfu = f"{100 * row['mfu']:.0f}%" if "mfu" in row else "—"
        lines.append(f"| {row['path']} | {row['rate']:.1f} {row['unit']} | {ms:.2f} | "
                     f"{gflops} | {mfu} |")
    for row in result["rows"]:
        if row.get("operators"):
            lines += ["", f"Where the time goes: {row['path']} (torch.profiler, self CPU time "
                      "of one step):", "", *operator_table(row["operators"])]
            lines += ["", describe_bound(ConvolutionBound(**row["bound"]),
                                         result["peaks"]["float32"]["peak_gflops"], 0.50,
                                         timed_seconds=row["seconds"])]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: as set)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--stem", default="paths",
                        help="results file names: STEM.json, STEM.md (another machine's "
                             "rows beside this one's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    peaks = {"float32": stable_peak(3), "bfloat16": stable_peak(3, dtype=torch.bfloat16)}
    peak = peaks["float32"]["peak_gflops"]
    rows = [pretraining_row(args.repeats, peak),
            pretraining_row(args.repeats, peaks["bfloat16"]["peak_gflops"], "bfloat16"),
            pretraining_row(args.repeats, peak, compiled=True),
            pretraining_row(args.repeats, peaks["bfloat16"]["peak_gflops"], "bfloat16",
                            compiled=True),
            caching_row(args.repeats, peak)]
    rows += head_rows(args.repeats)
    rows += product_rows(args.repeats)
    result = {"command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
              "machine": describe_machine(), "threads": torch.get_num_threads(),
              "repeats": args.repeats,
              "peaks": peaks, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out / f"{args.stem}.json", json.dumps(result, indent=1).encode())
    atomic_write_bytes(args.out / f"{args.stem}.md", markdown(result).encode())
    print(markdown(result))


if __name__ == "__main__":
    main()
