"""Interleaved A/B: two servers alive at once, measured in alternation, one ratio per round.

Why: this VM's speed drifts by ~15 % over tens of seconds with nothing else running. A cost of a
few percent measured as two separate blocks of runs (all of A, then all of B) is mostly that
drift. Here both servers run side by side (pinned to the same core; the idle one uses nothing),
each round measures A then B (B then A in odd rounds, so a steady drift favours neither), and
the reported cost is the median of the per-round ratios, with their range.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from benchmarks.report import Point


@dataclass(frozen=True, slots=True)
class Round:
    index: int
    base: Point  # A: e.g. the service with tracing and metrics off
    variant: Point  # B: the same service with them on

    @property
    def throughput_cost(self) -> float:
        """1 - rps(B) / rps(A): the share of throughput B loses."""
        return 1 - self.variant.load.rps / self.base.load.rps

    @property
    def cpu_cost(self) -> float:
        """CPU per request of B over A, minus one: the same cost from the server's CPU time."""
        return self.variant.cpu_us_per_request / self.base.cpu_us_per_request - 1


def interleave(
    measure_base: Callable[[], Point], measure_variant: Callable[[], Point], rounds: int
) -> list[Round]:
    out = []
    for index in range(rounds):
        if index % 2 == 0:
            base = measure_base()
            variant = measure_variant()
        else:
            variant = measure_variant()
            base = measure_base()
        out.append(Round(index, base, variant))
    return out


@dataclass(frozen=True, slots=True)
class Summary:
    throughput_cost: float  # median over rounds
    cpu_cost: float  # median over rounds
    throughput_range: tuple[float, float]
    rounds: int


def summarize(rounds: Sequence[Round]) -> Summary | None:
    valid = [r for r in rounds if r.base.load.requests and r.variant.load.requests]
    if not valid:
        return None
    costs = [r.throughput_cost for r in valid]
    return Summary(
        throughput_cost=statistics.median(costs),
        cpu_cost=statistics.median(r.cpu_cost for r in valid),
        throughput_range=(min(costs), max(costs)),
        rounds=len(valid),
    )


def markdown(rounds: Sequence[Round], title: str) -> list[str]:
    lines = [
        f"## {title}",
        "",
        "| round | rps off | rps on | throughput cost | CPU/request off µs | CPU/request on µs | "
        "CPU cost | other CPU % (off / on) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.index + 1} | {r.base.load.rps:.0f} | {r.variant.load.rps:.0f} | "
        f"{r.throughput_cost:+.1%} | {r.base.cpu_us_per_request:.0f} | "
        f"{r.variant.cpu_us_per_request:.0f} | {r.cpu_cost:+.1%} | "
        f"{r.base.other_cpu_pct:.0f} / {r.variant.other_cpu_pct:.0f} |"
        for r in rounds
    ]
    summary = summarize(rounds)
    if summary is not None:
        low, high = summary.throughput_range
        lines += [
            "",
            f"Median over {summary.rounds} rounds: throughput cost {summary.throughput_cost:+.1%} "
            f"(range {low:+.1%} .. {high:+.1%}), CPU per request {summary.cpu_cost:+.1%}.",
        ]
    return [*lines, ""]
