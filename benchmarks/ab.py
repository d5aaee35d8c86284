"""The observability A/B: two servers loaded AT ONCE, one ratio per window.

Why: this VM's speed drifts by ~15 % over seconds to tens of seconds with nothing else running.
Measured one after the other, even in alternating 3 s windows, single ratios ranged from -13 %
to +33 % for a cost near 12 %. Here both servers run pinned to the same core and two wrk
processes load them at the same time (``benchmarks.__main__._measure_together``): whatever
slows the machine slows both, and the per-window ratios of CPU per request had a standard
deviation of ~3-4 % (same service on both sides: -1.8 % median over 12 windows). Each server gets
about half the core, so the absolute rates are about half a lone server's; the ratio of CPU per
request is what a lone server's throughput ratio is made of (it is CPU-bound at c=32), and the
throughput ratio is reported beside it. The cost is the median of the windows, with their range.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks.report import Point


@dataclass(frozen=True, slots=True)
class Round:
    index: int
    base: Point  # A: e.g. the service with tracing and metrics off
    variant: Point  # B: the same service with them on, measured in the same window

    @property
    def throughput_cost(self) -> float:
        """1 - rps(B) / rps(A): the share of throughput B loses."""
        return 1 - self.variant.load.rps / self.base.load.rps

    @property
    def cpu_cost(self) -> float:
        """CPU per request of B over A, minus one: the same cost from the server's CPU time."""
        return self.variant.cpu_us_per_request / self.base.cpu_us_per_request - 1

    @property
    def p50_ratio(self) -> float:
        """p50 latency of B over A."""
        return self.variant.load.p50_ms / self.base.load.p50_ms


@dataclass(frozen=True, slots=True)
class Summary:
    throughput_cost: float  # median over rounds
    cpu_cost: float  # median over rounds
    throughput_range: tuple[float, float]
    rounds: int
    p50_ratio: float = 1.0  # median over rounds
    p50_range: tuple[float, float] = (1.0, 1.0)


def summarize(rounds: Sequence[Round]) -> Summary | None:
    valid = [r for r in rounds if r.base.load.requests and r.variant.load.requests]
    if not valid:
        return None
    costs = [r.throughput_cost for r in valid]
    p50s = [r.p50_ratio for r in valid]
    return Summary(
        throughput_cost=statistics.median(costs),
        cpu_cost=statistics.median(r.cpu_cost for r in valid),
        throughput_range=(min(costs), max(costs)),
        rounds=len(valid),
        p50_ratio=statistics.median(p50s),
        p50_range=(min(p50s), max(p50s)),
    )


def markdown(
    rounds: Sequence[Round], title: str, labels: tuple[str, str] = ("off", "on")
) -> list[str]:
    a, b = labels
    lines = [
        f"## {title}",
        "",
        f"| window | rps {a} | rps {b} | throughput cost | p50 ms {a} | p50 ms {b} | "
        f"CPU/request {a} µs | CPU/request {b} µs | CPU cost | other CPU % ({a} / {b}) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.index + 1} | {r.base.load.rps:.0f} | {r.variant.load.rps:.0f} | "
        f"{r.throughput_cost:+.1%} | {r.base.load.p50_ms:.3f} | {r.variant.load.p50_ms:.3f} | "
        f"{r.base.cpu_us_per_request:.0f} | {r.variant.cpu_us_per_request:.0f} | "
        f"{r.cpu_cost:+.1%} | {r.base.other_cpu_pct:.0f} / {r.variant.other_cpu_pct:.0f} |"
        for r in rounds
    ]
    summary = summarize(rounds)
    if summary is not None:
        low, high = summary.throughput_range
        p50_low, p50_high = summary.p50_range
        lines += [
            "",
            f"Median over {summary.rounds} windows: throughput cost {summary.throughput_cost:+.1%} "
            f"(range {low:+.1%} .. {high:+.1%}), CPU per request {summary.cpu_cost:+.1%}, p50 "
            f"{b} / {a} {summary.p50_ratio:.3f} (range {p50_low:.3f} .. {p50_high:.3f}).",
        ]
    return [*lines, ""]
