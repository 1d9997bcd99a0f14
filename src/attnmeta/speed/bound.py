"""What the convolution kernels alone allow: the bound behind an MFU or speed-up goal.

attnmeta, the peers and PyTorch's own compiled graphs all call the same oneDNN convolution
kernels, and those kernels carry nearly every FLOP a Conv4 step counts. So the time those
kernels take in one profiled step bounds what any rewrite of the rest (batch norm, pooling,
copies, element-wise ops, Python) can reach:

- MFU ceiling = counted FLOPs / (convolution seconds x peak): the MFU if everything but the
  convolutions took no time at all;
- speed-up ceiling over a peer = the peer's seconds / the convolution seconds, for an
  implementation that makes the same convolution calls;
- the budget for the rest at a target speed-up = the peer's seconds / target - convolution
  seconds (negative: the target is out of reach without faster convolutions).

The convolution time is the self CPU time of the kernel operators in a ``torch.profiler``
trace (the wrappers ``aten::convolution`` / ``aten::_convolution`` only dispatch).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

from torch.utils.flop_counter import FlopCounterMode

__all__ = ["CONVOLUTION_KERNELS", "ConvolutionBound", "convolution_bound", "operator_times",
           "operator_table", "convolution_flops", "describe_bound"]

# Self CPU time of these operators is the convolution arithmetic (forward, both backward
# products); inductor's CPU graphs call the same aten kernels for training convolutions.
CONVOLUTION_KERNELS = ("aten::mkldnn_convolution", "aten::convolution_backward",
                       "aten::mkldnn_convolution_backward")
_CONVOLUTION_FLOP_OPS = ("convolution", "convolution_backward", "_convolution")


def operator_times(run: Callable[[], object]) -> list[dict]:
    """Every operator of one ``run()`` on the calling thread, by self CPU time, largest
    first: ``{"op", "self_cpu_ms", "share", "calls"}``."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        run()
    events = profiler.key_averages()
    total = sum(event.self_cpu_time_total for event in events) or 1.0
    ranked = sorted(events, key=lambda event: event.self_cpu_time_total, reverse=True)
    return [{"op": event.key, "self_cpu_ms": event.self_cpu_time_total / 1e3,
             "share": event.self_cpu_time_total / total, "calls": event.count}
            for event in ranked]


def convolution_flops(run: Callable[[], object]) -> tuple[float, float]:
    """(all FLOPs, convolution FLOPs) of one ``run()``, by ``torch.utils.flop_counter``."""
    with FlopCounterMode(display=False) as counter:
        run()
    by_op = {str(op).split(".")[-1]: flops
             for op, flops in counter.get_flop_counts().get("Global", {}).items()}
    convolution = sum(by_op.get(name, 0) for name in _CONVOLUTION_FLOP_OPS)
    return float(counter.get_total_flops()), float(convolution)


def operator_table(operators: list[dict]) -> list[str]:
    """The Markdown lines of a table of :func:`operator_times` rows."""
    return ["| operator | share | ms | calls |", "|---|---|---|---|",
            *(f"| `{op['op']}` | {op['share']:.1%} | {op['self_cpu_ms']:.0f} | {op['calls']} |"
              for op in operators)]


@dataclass(frozen=True)
class ConvolutionBound:
    """One profiled step: its counted FLOPs, how many of them are convolutions, the self
    time of the convolution kernels and of everything (profiled, milliseconds)."""

    flops: float
    convolution_flops: float
    convolution_ms: float
    profiled_ms: float

    @property
    def convolution_share(self) -> float:
        """Fraction of the profiled time spent inside convolution kernels."""
        return self.convolution_ms / self.profiled_ms

    def convolution_gflops(self) -> float:
        """The rate the convolution kernels ran at, GFLOP/s."""
        return self.convolution_flops / (self.convolution_ms / 1e3) / 1e9

    def mfu_ceiling(self, peak_gflops: float) -> float:
        """MFU with everything but the convolutions taking no time."""
        return self.flops / (self.convolution_ms / 1e3) / 1e9 / peak_gflops

    def speedup_ceiling(self, peer_seconds: float) -> float:
        """The most a step making these convolution calls can beat a ``peer_seconds`` step."""
        return peer_seconds / (self.convolution_ms / 1e3)

    def rest_budget_ms(self, peer_seconds: float, target: float) -> float:
        """What all but the convolutions may take for ``target`` x a ``peer_seconds`` step
        (negative: out of reach with these kernels)."""
        return 1e3 * peer_seconds / target - self.convolution_ms

    def as_dict(self) -> dict:
        return asdict(self)


def convolution_bound(run: Callable[[], object], flops: tuple[float, float] | None = None,
                      top: int = 10) -> tuple[ConvolutionBound, list[dict]]:
    """Profile one ``run()`` (warm it first): its :class:`ConvolutionBound` and its ``top``
    operators. ``flops`` = (all, convolution) if counted already (compiled code bypasses
    the dispatcher the counter reads: count an uncompiled run of the same arithmetic)."""
    operators = operator_times(run)
    all_flops, conv_flops = flops if flops is not None else convolution_flops(run)
    bound = ConvolutionBound(
        flops=all_flops, convolution_flops=conv_flops,
        convolution_ms=sum(op["self_cpu_ms"] for op in operators
                           if op["op"] in CONVOLUTION_KERNELS),
        profiled_ms=sum(op["self_cpu_ms"] for op in operators))
    return bound, operators[:top]


def describe_bound(bound: ConvolutionBound, peak_gflops: float, goal_mfu: float,
                   peer: tuple[str, float] | None = None, goal_speedup: float = 2.0,
                   timed_seconds: float | None = None) -> str:
    """One paragraph for a results table: where the time went, and whether ``goal_mfu``
    (and ``goal_speedup`` x ``peer`` = (name, seconds per step)) fit under the bound;
    ``timed_seconds``, the step's unprofiled time, shows how far profiling moved it."""
    ceiling = bound.mfu_ceiling(peak_gflops)
    timed = "" if timed_seconds is None else f", timed {1e3 * timed_seconds:.0f} ms unprofiled"
    text = (f"Convolution kernels: {bound.convolution_ms:.0f} of {bound.profiled_ms:.0f} ms "
            f"profiled{timed} ({bound.convolution_share:.0%} of the profiled), "
            f"{bound.convolution_flops / bound.flops:.0%} of the counted FLOPs, at "
            f"{bound.convolution_gflops():.0f} GFLOP/s ({bound.convolution_gflops() / peak_gflops:.0%}"
            f" of the {peak_gflops:.0f} GFLOP/s peak). With everything else free the MFU "
            f"would be {ceiling:.0%}: the {goal_mfu:.0%} goal "
            + ("fits under that bound only if all but the convolutions shrink to "
               f"{bound.flops / (goal_mfu * peak_gflops * 1e9) * 1e3 - bound.convolution_ms:.0f} ms"
               if ceiling > goal_mfu else "is out of reach with these convolution kernels")
            + ".")
    if peer is not None:
        name, seconds = peer
        budget = bound.rest_budget_ms(seconds, goal_speedup)
        text += (f" Against {name} ({1e3 * seconds:.0f} ms a step) the same convolution calls "
                 f"allow at most {bound.speedup_ceiling(seconds):.2f}×; {goal_speedup:g}× "
                 + (f"leaves {budget:.0f} ms for all the rest, which took "
                    f"{bound.profiled_ms - bound.convolution_ms:.0f} ms here"
                    if budget > 0 else "is out of reach with these convolution kernels")
                 + ".")
    return text
