"""The speed harness: each peer's meta-step computes MAML's meta-gradient, FLOPs are
counted right, and a small run writes its JSON and Markdown."""

from __future__ import annotations

import json

import pytest
import torch

from attnmeta.speed.peers import PEERS, PeerUnavailable, reference_conv4
from attnmeta.speed.harness import (ATTNMETA_VARIANTS, SpeedConfig, build_implementation, count_flops,
                                  omniglot_shaped_batch, run_speed, stable_peak, write_report)
from attnmeta.learners import MAML


def meta_gradient_of(key: str, steps: int, first_order: bool, initial) -> list[torch.Tensor]:
    config = SpeedConfig(n_way=3, inner_lr=0.3, workers=2)
    try:
        step = build_implementation(key, config, steps, first_order, initial)
    except PeerUnavailable as reason:
        pytest.skip(str(reason))
    step.model.double()
    batch = omniglot_shaped_batch(2, n_way=3, k_shot=1, q_query=2, seed=1)
    batch = type(batch)(batch.support_x.double(), batch.support_y, batch.query_x.double(),
                        batch.query_y)
    step.model.zero_grad(set_to_none=True)
    step.meta_gradient(batch)
    return [p.grad for p in step.model.parameters()]


@pytest.mark.parametrize("steps,first_order", [(1, False), (2, False), (2, True)])
@pytest.mark.parametrize("key", [*ATTNMETA_VARIANTS, *PEERS])
def test_every_implementation_computes_the_maml_meta_gradient(key, steps, first_order):
    """Against attnmeta's MAML learner (itself tested against a hand-unrolled reference in
    tests/learners/test_maml.py), float64, from the same initial weights."""
    torch.manual_seed(0)
    model = reference_conv4(3, hidden=64).double()
    initial = [p.detach().float().clone() for p in model.parameters()]
    with torch.no_grad():
        for p, value in zip(model.parameters(), initial):
            p.copy_(value)
    learner = MAML(model, 0.3, steps, first_order=first_order)
    batch = omniglot_shaped_batch(2, n_way=3, k_shot=1, q_query=2, seed=1)
    batch = type(batch)(batch.support_x.double(), batch.support_y, batch.query_x.double(),
                        batch.query_y)
    learner.meta_loss(batch).backward()
    expected = [p.grad for p in model.parameters()]
    actual = meta_gradient_of(key, steps, first_order, initial)
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-12)


def test_flop_count_of_a_convolution_is_the_closed_form():
    conv = torch.nn.Conv2d(4, 8, 3, padding=1)
    x = torch.randn(2, 4, 10, 10)
    assert count_flops(lambda: conv(x)) == 2 * 2 * 8 * 4 * 9 * 10 * 10


def test_a_small_run_writes_json_and_markdown(tmp_path):
    config = SpeedConfig(meta_batch=2, repeats=1, threads=1, workers=1,
                         settings=[(1, False)],
                         implementations=["attnmeta", "attnmeta_1_worker", "attnmeta_bfloat16",
                                          "attnmeta_compiled_1_worker", "plain_loop"],
                         episode_settings=[(3, 1)], memory=True, gemm_size=128, conv_batch=2)
    results = run_speed(config, log=lambda line: None)
    (tmp_path / "paths.md").write_text("# Throughput\n\n| path | rate |\n|---|---|\n| p | 1 |\n")
    path = write_report(results, "attnmeta bench speed --test", tmp_path)
    saved = json.loads((tmp_path / "speed.json").read_text())
    rows = {row["key"]: row for row in saved["maml"]}
    assert set(rows) == {"attnmeta", "attnmeta_1_worker", "attnmeta_bfloat16",
                         "attnmeta_compiled_1_worker", "plain_loop"}
    assert rows["attnmeta"]["meta_gradient_rel_diff_vs_plain_loop"] < 1e-5
    # the compiled meta-gradient: float32 round-off of other kernels (exact in float64:
    # tests/learners/test_maml_compiled.py), ten times below bfloat16's; its FLOPs are the
    # loop's, its compile time is reported apart
    compiled = rows["attnmeta_compiled_1_worker"]
    assert compiled["meta_gradient_rel_diff_vs_plain_loop"] < 1e-4
    assert compiled["gflop_per_meta_batch"] == pytest.approx(
        rows["attnmeta"]["gflop_per_meta_batch"])
    assert compiled["compile_s"] >= 0 and compiled["peak_memory_mb"] > 0
    assert "compile_s" not in rows["attnmeta"]
    # bfloat16 forwards round: the row shows how far its meta-gradient is off
    assert rows["attnmeta_bfloat16"]["meta_gradient_rel_diff_vs_plain_loop"] > 1e-4
    # MFU against the best fixed measurement of each row's precision: 3 before + 2 after
    peaks = saved["peaks"]
    assert len(peaks["float32"]["runs"]) == 5 and len(peaks["bfloat16"]["runs"]) == 5
    for row in saved["maml"]:
        peak = peaks[row["precision"]]["peak_gflops"]
        assert row["mfu"] == pytest.approx(row["gflops"] / peak)
    # 2 tasks of Conv4 on 28x28: at least the query forwards, 2 x 15 x 19.6 MFLOP.
    assert rows["plain_loop"]["gflop_per_meta_batch"] > 2 * 15 * 0.0196
    assert rows["attnmeta"]["peak_memory_mb"] > 0
    assert {row["learner"] for row in saved["episode_learners"]} == {"ProtoNets", "FEAT"}
    text = path.read_text()
    assert "attnmeta bench speed --test" in text and "plain autograd.grad loop" in text
    assert "Compile time of the compiled rows" in text
    # the profiled rows, compiled included, find their convolution kernels
    assert "bound" not in rows["attnmeta"]  # its workers escape the profiler
    for key in ("attnmeta_1_worker", "attnmeta_compiled_1_worker"):
        bound = rows[key]["bound"]
        assert 0 < bound["convolution_ms"] < bound["profiled_ms"], key
        assert 0 < bound["convolution_flops"] < bound["flops"], key
    assert text.count("Convolution kernels:") == 2
    # the machine's paths table beside it is embedded, its title demoted; no load table
    assert "## The paths beyond MAML (benchmarks/paths.py), from `paths.md`" in text
    assert saved["related"] == {"paths": None}
    assert "\n## Throughput\n" in text and "| p | 1 |" in text and "Under load" not in text


def test_the_stable_peak_is_the_best_measurement_and_reports_the_spread():
    earlier = [{"peak_gflops": 100.0}, {"peak_gflops": 80.0}]
    peak = stable_peak(1, gemm_size=64, conv_batch=1, earlier=earlier)
    rates = [run["peak_gflops"] for run in peak["runs"]]
    assert rates[:2] == [100.0, 80.0] and len(rates) == 3
    assert peak["peak_gflops"] == max(rates)
    assert peak["spread"] == pytest.approx((max(rates) - min(rates)) / max(rates))
