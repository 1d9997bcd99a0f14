"""Speed harness: MAML meta-training steps side by side with the peer libraries, MFU, memory.

One process times every implementation on the same random Omniglot-shaped meta-batch
(Conv4, 28×28, 5-way 1-shot, 15 queries, meta-batch 32 by default), alternating
implementations within each repeat so drift hits all alike; it first checks that each
implementation's meta-gradient equals the plain autograd loop's from the same initial
weights. FLOPs come from ``torch.utils.flop_counter`` over one meta-batch; the peak is the
best of several fixed measurements (a large ``torch.mm`` and a 3×3 64→64 convolution)
before and after the run, reported with their spread, so that MFU does not swing with one
low measurement; peak memory is the resident-set growth of a fresh subprocess running two
steps of one implementation.

    attnmeta bench speed [--repeats 5] [--out benchmarks/results]
    python benchmarks/speed.py ...            (the same)
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from attnmeta.speed.bound import (ConvolutionBound, convolution_bound, convolution_flops,
                                   describe_bound, operator_table)
from attnmeta.speed.peers import PEERS, MetaStep, PeerUnavailable, reference_conv4
from attnmeta.machine import machine_info
from attnmeta.learners import FEAT, MAML, ProtoNet
from attnmeta.models import Conv4
from attnmeta.tasks.episode import Episode
from attnmeta.train import accumulate_meta_gradient

__all__ = ["SpeedConfig", "omniglot_shaped_batch", "measure_peak", "stable_peak", "best_seconds",
           "count_flops", "run_speed", "write_report"]


# attnmeta as shipped (its Conv4, task-parallel workers); the same on one worker; and its
# MAML machinery alone, over the peers' textbook Conv4 on one worker.
ATTNMETA_VARIANTS = ("attnmeta", "attnmeta_1_worker", "attnmeta_stock_conv4")
# The same on one worker with bfloat16 forwards: measured, not offered (train refuses
# train.precision=bfloat16 for gradient learners; its meta-gradient is off, see grad diff).
BFLOAT16_VARIANTS = ("attnmeta_bfloat16",)
# MAML's strategy "compiled" (torch.compile over each task's meta-gradient) on one worker
# (the workers' per-meta-batch copies would compile again): its compile time is the first
# meta-batch's excess, reported apart.
COMPILED_VARIANTS = ("attnmeta_compiled_1_worker",)
# Rows whose operators are profiled and bounded by their convolutions: those running on the
# calling thread, the only one the profiler sees.
PROFILED_VARIANTS = ("attnmeta_1_worker", *COMPILED_VARIANTS)


@dataclass
class SpeedConfig:
    n_way: int = 5
    k_shot: int = 1
    q_query: int = 15
    meta_batch: int = 32
    inner_lr: float = 0.4
    settings: list[tuple[int, bool]] = field(
        default_factory=lambda: [(1, False), (1, True), (5, False), (5, True)])  # (steps, first order)
    repeats: int = 5
    threads: int = 2
    workers: int = 2                     # attnmeta's task-parallel worker threads
    implementations: list[str] = field(
        default_factory=lambda: [*ATTNMETA_VARIANTS, *COMPILED_VARIANTS, *BFLOAT16_VARIANTS,
                                 *PEERS])
    episode_settings: list[tuple[int, int]] = field(default_factory=lambda: [(5, 5), (20, 1)])
    memory: bool = True
    profile: bool = True                 # top operators and convolution bound of attnmeta's rows
    gemm_size: int = 4096                # the peak's square matrix product
    conv_batch: int = 256                # the peak's 3x3 64->64 convolution batch (28x28)
    peak_measurements: tuple[int, int] = (3, 2)  # fixed peak measurements before, after


def omniglot_shaped_batch(tasks: int, n_way: int = 5, k_shot: int = 1, q_query: int = 15,
                          seed: int = 0) -> Episode:
    """Random ``[T, N*K, 1, 28, 28]`` support / ``[T, N*Q, 1, 28, 28]`` query images in [0, 1)."""
    generator = torch.Generator().manual_seed(seed)
    support = torch.rand(tasks, n_way * k_shot, 1, 28, 28, generator=generator)
    query = torch.rand(tasks, n_way * q_query, 1, 28, 28, generator=generator)
    return Episode(support, torch.arange(n_way).repeat_interleave(k_shot).expand(tasks, -1),
                   query, torch.arange(n_way).repeat_interleave(q_query).expand(tasks, -1))


# -- the machine's peak ----------------------------------------------------------------------
def best_seconds(run: Callable[[], object], repeats: int = 5) -> float:
    """The fastest of ``repeats`` timed calls of ``run``, after one warm-up call."""
    run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def _best_rate(run: Callable[[], object], flops: float, repeats: int = 5) -> float:
    return flops / best_seconds(run, repeats)


def measure_peak(gemm_size: int = 4096, conv_batch: int = 256,
                 dtype: torch.dtype = torch.float32) -> dict[str, float]:
    """GFLOP/s of a ``gemm_size``³ ``torch.mm`` (MKL) and of a 3×3 64→64 convolution on
    ``[conv_batch, 64, 28, 28]`` (oneDNN; the better of the contiguous and channels-last
    layouts) in ``dtype``, best of 5, with the current thread setting."""
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(gemm_size, gemm_size, generator=generator).to(dtype) for _ in range(2))
    x = torch.randn(conv_batch, 64, 28, 28, generator=generator).to(dtype)
    conv = nn.Conv2d(64, 64, 3, padding=1).to(dtype)
    conv_flops = 2 * conv_batch * 64 * 64 * 9 * 28 * 28
    with torch.no_grad():
        gemm = _best_rate(lambda: a @ b, 2 * gemm_size ** 3)
        conv_nchw = _best_rate(lambda: conv(x), conv_flops)
        x_last = x.contiguous(memory_format=torch.channels_last)
        conv_last = conv.to(memory_format=torch.channels_last)
        conv_nhwc = _best_rate(lambda: conv_last(x_last), conv_flops)
    conv_rate = max(conv_nchw, conv_nhwc)
    return {"gemm_gflops": gemm / 1e9, "conv3x3_gflops": conv_rate / 1e9,
            "conv3x3_nchw_gflops": conv_nchw / 1e9, "conv3x3_channels_last_gflops": conv_nhwc / 1e9,
            "peak_gflops": max(gemm, conv_rate) / 1e9}


def stable_peak(measurements: int = 3, gemm_size: int = 4096, conv_batch: int = 256,
                dtype: torch.dtype = torch.float32, earlier: list[dict] | None = None) -> dict:
    """The best of ``measurements`` fixed :func:`measure_peak` calls (plus ``earlier`` ones'
    runs, e.g. taken before a benchmark when these follow it): ``peak_gflops``, every
    measurement under ``runs`` and their ``spread``, (best - worst) / best."""
    runs = [*(earlier or []), *(measure_peak(gemm_size, conv_batch, dtype)
                                for _ in range(measurements))]
    rates = [run["peak_gflops"] for run in runs]
    return {"dtype": str(dtype).removeprefix("torch."), "runs": runs,
            "peak_gflops": max(rates), "spread": (max(rates) - min(rates)) / max(rates)}


def count_flops(run: Callable[[], object]) -> float:
    """FLOPs of ``run()`` (forward and backward ops alike) by ``torch.utils.flop_counter``."""
    return convolution_flops(run)[0]


# -- implementations ---------------------------------------------------------------------------
def attnmeta_maml(model: nn.Module, inner_lr: float, steps: int, first_order: bool,
                  workers: int, name: str, precision: str = "float32",
                  strategy: str = "loop") -> MetaStep:
    learner = MAML(model, inner_lr, steps, first_order=first_order, strategy=strategy)

    def meta_gradient(batch: Episode, workers: int = workers, learner: MAML = learner) -> None:
        accumulate_meta_gradient(learner, batch, backward_chunk=1, step=0, workers=workers,
                                 precision=precision)

    serial = lambda batch: meta_gradient(batch, workers=1)  # noqa: E731
    if strategy == "compiled":
        # FLOPs are counted by dispatch, which compiled kernels bypass: the loop over the same
        # model does the same arithmetic
        loop = MAML(model, inner_lr, steps, first_order=first_order)
        serial = lambda batch: meta_gradient(batch, workers=1, learner=loop)  # noqa: E731
    return MetaStep(name, model, meta_gradient,
                    note=f"MAML {strategy}, 1 task per backward, {workers} worker thread(s)",
                    serial_meta_gradient=serial, compiles=strategy == "compiled")


def build_implementation(key: str, config: SpeedConfig, steps: int, first_order: bool,
                         initial: list[torch.Tensor]) -> MetaStep:
    """A fresh model with the shared initial weights, wrapped by implementation ``key``."""
    if key in ("attnmeta", "attnmeta_1_worker", "attnmeta_bfloat16", *COMPILED_VARIANTS):
        model: nn.Module = Conv4(in_channels=1, out_dim=config.n_way)
    else:
        model = reference_conv4(config.n_way)
    with torch.no_grad():
        for p, value in zip(model.parameters(), initial, strict=True):
            p.copy_(value)
    if key == "attnmeta":
        return attnmeta_maml(model, config.inner_lr, steps, first_order, config.workers,
                             f"attnmeta MAML (its Conv4, {config.workers} workers)")
    if key == "attnmeta_1_worker":
        return attnmeta_maml(model, config.inner_lr, steps, first_order, 1,
                             "attnmeta MAML (its Conv4, 1 worker)")
    if key == "attnmeta_bfloat16":
        return attnmeta_maml(model, config.inner_lr, steps, first_order, 1,
                             "attnmeta MAML (its Conv4, 1 worker, bfloat16 forward)",
                             precision="bfloat16")
    if key == "attnmeta_compiled_1_worker":
        return attnmeta_maml(model, config.inner_lr, steps, first_order, 1,
                             "attnmeta MAML compiled (its Conv4, 1 worker)", strategy="compiled")
    if key == "attnmeta_stock_conv4":
        return attnmeta_maml(model, config.inner_lr, steps, first_order, 1,
                             "attnmeta MAML (textbook Conv4, 1 worker)")
    if key not in PEERS:
        raise ValueError(f"implementation {key!r}: expected one of "
                         f"{[*ATTNMETA_VARIANTS, *COMPILED_VARIANTS, *BFLOAT16_VARIANTS, *PEERS]}")
    return PEERS[key](model, config.inner_lr, steps, first_order)


def _initial_weights(n_way: int) -> list[torch.Tensor]:
    torch.manual_seed(0)
    return [p.detach().clone() for p in reference_conv4(n_way).parameters()]


def _meta_gradient(step: MetaStep, batch: Episode) -> list[torch.Tensor]:
    step.model.zero_grad(set_to_none=True)
    step.meta_gradient(batch)
    return [p.grad.detach().clone() for p in step.model.parameters()]


def _relative_difference(actual: list[torch.Tensor], expected: list[torch.Tensor]) -> float:
    """Largest absolute difference over the largest gradient entry, over all parameters
    (per-tensor ratios would blow up on the conv biases, whose exact gradient is 0 because
    batch norm follows them)."""
    difference = max((a - e).abs().max().item() for a, e in zip(actual, expected))
    return difference / max(max(e.abs().max().item() for e in expected), 1e-30)


def _time_steps(steps: dict[str, MetaStep], optimizers: dict[str, torch.optim.Optimizer],
                batch: Episode, repeats: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {key: [] for key in steps}
    for repeat in range(repeats + 1):  # round 0 warms caches and is dropped
        for key, step in steps.items():
            start = time.perf_counter()
            optimizers[key].zero_grad(set_to_none=True)
            step.meta_gradient(batch)
            optimizers[key].step()
            if repeat:
                times[key].append(time.perf_counter() - start)
    return times


def memory_probe(key: str, config: SpeedConfig, steps: int, first_order: bool) -> float:
    """Peak resident-set growth (MB) over two meta-training steps, in a fresh process
    (Linux: ``/proc/self/status``)."""
    request = json.dumps({"key": key, "config": asdict(config), "steps": steps,
                          "first_order": first_order})
    result = subprocess.run([sys.executable, "-m", "attnmeta.speed.harness", "--memory-probe",
                             request], capture_output=True, text=True, check=False)
    if result.returncode:
        raise RuntimeError(f"memory probe for {key} failed: {result.stderr.strip()[-500:]}")
    return float(result.stdout.strip().splitlines()[-1])


def _memory_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def _memory_probe_main(request: str) -> None:
    spec = json.loads(request)
    config = SpeedConfig(**{k: (list(map(tuple, v)) if k in ("settings", "episode_settings") else v)
                            for k, v in spec["config"].items()})
    torch.set_num_threads(config.threads)
    batch = omniglot_shaped_batch(config.meta_batch, config.n_way, config.k_shot, config.q_query)
    step = build_implementation(spec["key"], config, spec["steps"], spec["first_order"],
                                _initial_weights(config.n_way))
    optimizer = torch.optim.Adam(step.model.parameters(), 1e-3)
    if step.compiles:  # compilation's own memory is not the steps'
        step.meta_gradient(batch)
    # Not getrusage's ru_maxrss: Linux carries it across fork + exec from the parent (this
    # harness, holding every implementation). VmHWM belongs to this process's memory map;
    # writing 5 to clear_refs resets it to the current size, so the peak is the steps'.
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    baseline_kb = _memory_kb("VmRSS")
    for _ in range(2):
        optimizer.zero_grad(set_to_none=True)
        step.meta_gradient(batch)
        optimizer.step()
    print((_memory_kb("VmHWM") - baseline_kb) / 1024)


def profile_meta_gradient(step: MetaStep, batch: Episode, flops: tuple[float, float],
                          top: int = 10) -> dict:
    """The ``top`` operators by self CPU time over one meta-gradient of a step that runs on
    the calling thread (``torch.profiler`` sees no other), and what its convolution kernels
    alone allow (:mod:`attnmeta.speed.bound`); ``flops`` = (all, convolution), counted on
    the loop (compiled kernels bypass the counter)."""
    run = lambda: step.meta_gradient(batch)  # noqa: E731
    run()  # warm
    bound, operators = convolution_bound(run, flops, top)
    return {"operators": operators, "bound": bound.as_dict()}


def _summary(times: list[float]) -> dict[str, float]:
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}


def run_maml_setting(config: SpeedConfig, steps: int, first_order: bool,
                     log: Callable[[str], None]) -> list[dict]:
    """Rows for one (inner steps, order) setting: every available implementation."""
    batch = omniglot_shaped_batch(config.meta_batch, config.n_way, config.k_shot, config.q_query)
    initial = _initial_weights(config.n_way)
    implementations: dict[str, MetaStep] = {}
    rows: list[dict] = []
    setting = {"inner_steps": steps, "order": "first" if first_order else "second"}
    for key in config.implementations:
        try:
            implementations[key] = build_implementation(key, config, steps, first_order, initial)
        except PeerUnavailable as reason:
            log(f"  {key}: skipped ({reason})")
            rows.append({**setting, "key": key, "implementation": key, "skipped": str(reason)})
    reference_key = "plain_loop" if "plain_loop" in implementations else next(iter(implementations))
    reference = _meta_gradient(implementations[reference_key], batch)
    checks, first_call_s = {}, {}
    for key, step in implementations.items():  # the first call compiles, where one does
        start = time.perf_counter()
        checks[key] = _relative_difference(_meta_gradient(step, batch), reference)
        first_call_s[key] = time.perf_counter() - start
    # (all, convolution) FLOPs: the profiled rows' bound needs both
    flop_split = {key: convolution_flops(lambda step=step: step.on_one_thread(batch))
                  for key, step in implementations.items()}
    flops = {key: split[0] for key, split in flop_split.items()}
    optimizers = {key: torch.optim.Adam(step.model.parameters(), 1e-3)
                  for key, step in implementations.items()}
    log(f"  timing {len(implementations)} implementations x {config.repeats} repeats")
    times = _time_steps(implementations, optimizers, batch, config.repeats)
    for key, step in implementations.items():
        summary = _summary(times[key])
        row = {**setting, "key": key, "implementation": step.name, "note": step.note,
               "precision": "bfloat16" if key in BFLOAT16_VARIANTS else "float32",
               **summary, "meta_batches_per_s": 1 / summary["median_s"],
               "gflop_per_meta_batch": flops[key] / 1e9,
               "gflops": flops[key] / 1e9 / summary["median_s"],
               "meta_gradient_rel_diff_vs_plain_loop": checks[key]}
        if step.compiles:
            row["compile_s"] = max(first_call_s[key] - summary["median_s"], 0.0)
        if config.memory:
            row["peak_memory_mb"] = memory_probe(key, config, steps, first_order)
        rows.append(row)
        log(f"  {step.name:45s} {row['meta_batches_per_s']:.3f} meta-batches/s "
            f"(median of {len(times[key])}), {row['gflops']:.0f} GFLOP/s, "
            f"grad rel diff {checks[key]:.1e}")
    if config.profile:
        for key in PROFILED_VARIANTS:
            if key in implementations:
                row = next(r for r in rows if r.get("key") == key)
                row.update(profile_meta_gradient(implementations[key], batch, flop_split[key]))
    timed = [r for r in rows if "median_s" in r]
    # the peers run in float32: the ratio compares like with like only for float32 rows
    peer_rows = [r for r in timed if r["key"] in PEERS and r["key"] != "plain_loop"]
    fastest_peer = max(peer_rows, key=lambda r: r["meta_batches_per_s"], default=None)
    for row in timed:
        if fastest_peer is not None:
            row["ratio_to_fastest_peer"] = row["meta_batches_per_s"] / fastest_peer["meta_batches_per_s"]
            row["fastest_peer"] = fastest_peer["implementation"]
    return rows


def run_episode_learners(config: SpeedConfig,
                         log: Callable[[str], None]) -> list[dict]:
    """ProtoNets and FEAT training episodes per second (Conv4, Adam, one episode a step)."""
    rows = []
    for n_way, k_shot in config.episode_settings:
        batch = omniglot_shaped_batch(1, n_way, k_shot, config.q_query)
        learners: dict[str, nn.Module] = {}
        torch.manual_seed(0)
        learners["ProtoNets"] = ProtoNet(Conv4(out_dim=0, norm="running"))
        learners["FEAT"] = FEAT(Conv4(out_dim=0, norm="running"), feature_dim=64)
        optimizers = {name: torch.optim.Adam(learner.parameters(), 1e-3)
                      for name, learner in learners.items()}

        def train_step(name: str) -> None:
            optimizers[name].zero_grad(set_to_none=True)
            learners[name].training_step(batch).loss.backward()
            optimizers[name].step()

        flops = {name: count_flops(lambda name=name: train_step(name)) for name in learners}
        times: dict[str, list[float]] = {name: [] for name in learners}
        for repeat in range(config.repeats * 4 + 1):
            for name in learners:
                start = time.perf_counter()
                train_step(name)
                if repeat:
                    times[name].append(time.perf_counter() - start)
        for name in learners:
            summary = _summary(times[name])
            row = {"learner": name, "setting": f"{n_way}-way {k_shot}-shot, {config.q_query} query",
                   **summary, "episodes_per_s": 1 / summary["median_s"],
                   "gflop_per_episode": flops[name] / 1e9,
                   "gflops": flops[name] / 1e9 / summary["median_s"]}
            rows.append(row)
            log(f"  {name} {row['setting']}: {row['episodes_per_s']:.1f} episodes/s, "
                f"{row['gflops']:.0f} GFLOP/s")
    return rows


def run_speed(config: SpeedConfig, log: Callable[[str], None] = print) -> dict:
    """Every measurement of the harness, as one JSON-ready dict."""
    torch.set_num_threads(config.threads)
    before, after = config.peak_measurements
    peak_before = stable_peak(before, config.gemm_size, config.conv_batch)
    log(f"peak: {peak_before['peak_gflops']:.0f} GFLOP/s, best of {before} (spread "
        f"{peak_before['spread']:.0%})")
    maml_rows = []
    for steps, first_order in config.settings:
        log(f"MAML {steps} inner step(s), {'first' if first_order else 'second'} order:")
        maml_rows += run_maml_setting(config, steps, first_order, log)
    log("episode learners:")
    episode_rows = run_episode_learners(config, log)
    peak = stable_peak(after, config.gemm_size, config.conv_batch, earlier=peak_before["runs"])
    peaks = {"float32": peak}
    if any(row.get("precision") == "bfloat16" for row in maml_rows):
        peaks["bfloat16"] = stable_peak(before + after, config.gemm_size, config.conv_batch,
                                        torch.bfloat16)
    results = {"config": asdict(config), "machine": machine_info(), "peaks": peaks,
               "maml": maml_rows, "episode_learners": episode_rows}
    return with_peak_utilisation(results)


def with_peak_utilisation(results: dict) -> dict:
    """Set every row's MFU against the best fixed peak measurement of its precision (the
    machine's speed drifts; the best gives the lower, honest utilisation)."""
    results["peak_gflops"] = results["peaks"]["float32"]["peak_gflops"]
    for row in [*results["maml"], *results["episode_learners"]]:
        if "gflops" in row:
            row["mfu"] = row["gflops"] / results["peaks"][row.get("precision", "float32")][
                "peak_gflops"]
    return results


def _peak_line(peak: dict, config: dict) -> str:
    rates = ", ".join(f"{run['peak_gflops']:.0f}" for run in peak["runs"])
    best = max(peak["runs"], key=lambda run: run["peak_gflops"])
    return (f"Peak, {peak['dtype']}: {peak['peak_gflops']:.0f} GFLOP/s, the best of "
            f"{len(peak['runs'])} fixed measurements ({rates}; spread "
            f"{peak['spread']:.0%}); in the best, {config['gemm_size']}³ GEMM "
            f"{best['gemm_gflops']:.0f}, 3×3 64→64 conv on {config['conv_batch']}×28×28 "
            f"{best['conv3x3_gflops']:.0f} GFLOP/s.  ")


def write_report(results: dict, command: str, out_dir: Path, stem: str = "speed") -> Path:
    """``<stem>.json`` and ``<stem>.md`` under ``out_dir``, the machine's load and paths
    tables found beside them embedded (:func:`related_tables`); returns the Markdown path."""
    related = related_tables(out_dir, stem)
    results = {**results, "command": command,
               "related": {kind: data for kind, (_, _, data) in related.items()}}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    machine, config = results["machine"], results["config"]
    lines = [
        "# Speed: MAML meta-training side by side, MFU, ProtoNets/FEAT episodes per second", "",
        f"Command: `{command}`  ",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['threads']} torch "
        f"threads, torch {machine['torch']}, Python {machine['python']}  ",
        f"Workload: Conv4 on 28×28, {config['n_way']}-way {config['k_shot']}-shot, "
        f"{config['q_query']} queries, meta-batch {config['meta_batch']}, inner lr "
        f"{config['inner_lr']}, random images (seed 0); one step = meta-gradient + Adam.  ",
        *(_peak_line(peak, config) for peak in results["peaks"].values()),
        "float32's peak was measured before and after the timed rows. MFU = counted FLOPs / "
        "median time / the peak of the row's precision (the "
        "peers run in float32; × fastest peer compares float32 rows with them).  ",
        f"Median (min–max) of {config['repeats']} steps after a warm-up, implementations "
        "alternating within each repeat. \"grad diff\" = max relative difference of the "
        "meta-gradient from the plain loop's at the same initial weights (float32).", "",
        "| inner steps | order | implementation | meta-batches/s | s per meta-batch, median (min–max) "
        "| × fastest peer | GFLOP / meta-batch | GFLOP/s | MFU | peak memory MB | grad diff |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["maml"]:
        if "skipped" in row:
            lines.append(f"| {row['inner_steps']} | {row['order']} | {row['implementation']} | "
                         f"skipped: {row['skipped']} | | | | | | | |")
            continue
        ratio = row.get("ratio_to_fastest_peer")
        memory = row.get("peak_memory_mb")
        lines.append(
            f"| {row['inner_steps']} | {row['order']} | {row['implementation']} | "
            f"{row['meta_batches_per_s']:.3f} | {row['median_s']:.2f} ({row['min_s']:.2f}–"
            f"{row['max_s']:.2f}) | {'' if ratio is None else f'{ratio:.2f}×'} | "
            f"{row['gflop_per_meta_batch']:.0f} | {row['gflops']:.0f} | {row['mfu']:.1%} | "
            f"{'' if memory is None else f'{memory:.0f}'} | "
            f"{row['meta_gradient_rel_diff_vs_plain_loop']:.1e} |")
    compiled = [row for row in results["maml"] if "compile_s" in row]
    if compiled:
        lines += ["", "Compile time of the compiled rows (their first meta-batch less the "
                  "median; inductor's cache, `/tmp/torchinductor_$USER` by default, makes a "
                  "later process's much shorter). Their peak memory is measured after that "
                  "first, compiling step, while the other rows' includes their first step: "
                  "not like for like. " + "; ".join(
                      f"{row['inner_steps']} step(s) {row['order']} order, "
                      f"{row['implementation']}: {row['compile_s']:.0f} s" for row in compiled)
                  + "."]
    for row in results["maml"]:
        if row.get("operators"):
            peer = None
            if "ratio_to_fastest_peer" in row:
                peer = (row["fastest_peer"], row["median_s"] * row["ratio_to_fastest_peer"])
            lines += ["", f"Where the time goes: {row['implementation']}, {row['inner_steps']} "
                      f"inner step(s), {row['order']} order (torch.profiler, self CPU time of "
                      "one meta-batch on the calling thread):", "", *operator_table(row["operators"])]
            lines += ["", describe_bound(ConvolutionBound(**row["bound"]),
                                         results["peaks"]["float32"]["peak_gflops"], 0.40, peer,
                                         timed_seconds=row["median_s"])]
    lines += ["", "| learner | episode | episodes/s | s per episode, median (min–max) | "
              "GFLOP / episode | GFLOP/s | MFU |", "|---|---|---|---|---|---|---|"]
    for row in results["episode_learners"]:
        lines.append(f"| {row['learner']} | {row['setting']} | {row['episodes_per_s']:.1f} | "
                     f"{row['median_s']:.3f} ({row['min_s']:.3f}–{row['max_s']:.3f}) | "
                     f"{row['gflop_per_episode']:.1f} | {row['gflops']:.0f} | {row['mfu']:.1%} |")
    for title, related, _ in related.values():
        lines += ["", f"## {title}", ""] + [
            "#" + line if line.startswith("# ") else line for line in related.splitlines()]
    path = out_dir / f"{stem}.md"
    path.write_text("\n".join(lines) + "\n")
    return path


# The machine's other speed tables, written by their own benchmarks (run them first):
# benchmarks/load.py (the load row) and benchmarks/paths.py (pretraining, caching, heads,
# predict); speed_<machine> pairs with load_<machine> and paths_<machine>.
RELATED_TABLES = {"load": "Under load (benchmarks/load.py)",
                  "paths": "The paths beyond MAML (benchmarks/paths.py)"}


def related_tables(out_dir: Path, stem: str) -> dict[str, tuple[str, str, dict | None]]:
    """kind -> (title, Markdown, JSON or None) of this machine's load and paths tables
    found beside ``stem``."""
    found = {}
    for kind, title in RELATED_TABLES.items():
        path = out_dir / (kind + stem.removeprefix("speed") + ".md")
        if stem.startswith("speed") and path.is_file():
            data = path.with_suffix(".json")
            found[kind] = (f"{title}, from `{path.name}`", path.read_text(),
                           json.loads(data.read_text()) if data.is_file() else None)
    return found


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--memory-probe":
    _memory_probe_main(sys.argv[2])
