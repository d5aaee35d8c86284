"""The results file (markdown table), the latency-throughput plot and the target ratios."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.floor import FloorPoint
from benchmarks.wrk import LoadResult

if TYPE_CHECKING:
    from benchmarks.ab import Summary

P95_BUDGET_MS = 20.0
#: Other processes' CPU (% of one core) above which a point counts as disturbed: the sweep
#: re-runs it (benchmarks/__main__.py) and the targets say so.
QUIET_OTHER_CPU_PCT = 25.0


@dataclass(frozen=True, slots=True)
class Point:
    config: str
    concurrency: int
    load: LoadResult
    server_cpu_s: float
    machine_busy_s: float = 0.0  # all cores, whole machine, over the same window

    @property
    def cpu_us_per_request(self) -> float:
        return self.server_cpu_s / self.load.requests * 1e6 if self.load.requests else 0.0

    @property
    def capacity_rps(self) -> float:
        """Requests/s one fully used core would serve at this CPU cost: robust to noise that
        steals the server's core (CPU time is the server's own), unlike measured rps."""
        return 1e6 / self.cpu_us_per_request if self.cpu_us_per_request else 0.0

    @property
    def generator_cpu_pct(self) -> float:
        return 100 * self.load.generator_cpu_s / self.load.seconds if self.load.seconds else 0.0

    @property
    def other_cpu_pct(self) -> float:
        """CPU used by everything but the server and wrk: noise from other work on the machine."""
        other = self.machine_busy_s - self.server_cpu_s - self.load.generator_cpu_s
        return max(0.0, 100 * other / self.load.seconds) if self.load.seconds else 0.0

    @property
    def server_cpu_pct(self) -> float:
        return 100 * self.server_cpu_s / self.load.seconds if self.load.seconds else 0.0


@dataclass(frozen=True, slots=True)
class Ratio:
    name: str
    value: float | None
    target: str
    met: bool | None
    detail: str
    #: Which issue set the target ("24", "25", "28"), or "" for the earlier ones.
    issue: str = ""

    def line(self) -> str:
        verdict = {True: "MET", False: "NOT MET", None: "N/A"}[self.met]
        value = "n/a" if self.value is None else f"{self.value:.2f}"
        where = f"[issue {self.issue}] " if self.issue else ""
        return f"- {where}{self.name}: {value} (target {self.target}) -> {verdict}; {self.detail}"


def _of(points: Sequence[Point], config: str) -> list[Point]:
    return [p for p in points if p.config == config]


def _at(points: Sequence[Point], config: str, concurrency: int) -> Point | None:
    return next((p for p in _of(points, config) if p.concurrency == concurrency), None)


def _peak(points: Sequence[Point], config: str, budget_ms: float | None = None) -> Point | None:
    ok = [
        p
        for p in _of(points, config)
        if p.load.errors == 0 and (budget_ms is None or p.load.p95_ms <= budget_ms)
    ]
    return max(ok, key=lambda p: p.load.rps, default=None)


def _cheapest(points: Sequence[Point], config: str) -> Point | None:
    """The point (c >= 8) with the lowest CPU per request: the least noise-inflated cost."""
    loaded = [p for p in _of(points, config) if p.concurrency >= 8 and p.load.requests]
    return min(loaded, key=lambda p: p.cpu_us_per_request, default=None)


def _capacity_ratio(points: Sequence[Point], a: str, b: str) -> str:
    pa, pb = _cheapest(points, a), _cheapest(points, b)
    if pa is None or pb is None:
        return ""
    return (
        f"; CPU-derived capacity ratio {pa.capacity_rps / pb.capacity_rps:.2f} "
        f"({pa.capacity_rps:.0f} vs {pb.capacity_rps:.0f} rps per core)"
    )


#: The configuration names the targets compare (benchmarks/__main__.py CONFIGS).
CEILING = "ceiling (hello world)"
TRANSPORT = "transport ceiling (raw ASGI, service protocol)"
SERVICE = "service batched fp32 + tracing + metrics"
NAIVE = "naive inline fp32"
SERVICE_2W = "service 2 workers + tracing + metrics"
NAIVE_2W = "naive inline fp32, 2 workers"
CEILING_2W = "ceiling (hello world), 2 workers"
TRANSPORT_2W = "transport ceiling (raw ASGI, service protocol), 2 workers"
V1_JSON = "service batched fp32"
V2_BINARY = "service batched v2 binary fp32"
V2_BINARY_H2LOAD = "service batched v2 binary fp32 (h2load)"
GRPC = "service batched gRPC raw fp32 (h2load)"
GRPC_CEILING = "gRPC ceiling (grpc.aio, parse + constant answer) (h2load)"
GRPC_ONE_CONNECTION = "service batched gRPC raw fp32, 1 connection x 32 streams (h2load)"
#: Issue 24: the ceiling share, the CPU share and the observability cost.
CEILING_SHARE = 0.85
CPU_SHARE = 1.25
#: Issue 25: keys on within 3 % of keys off.
KEYS_BUDGET = 1.03


def ratios(
    points: Sequence[Point],
    observability: Summary | None = None,
    keys: Mapping[int, Summary] | None = None,
) -> list[Ratio]:
    """Every target, the open issues' first. ``observability`` (the A/B of ab.py) decides the
    tracing + metrics cost when given; ``keys``: the keys on/off A/B per concurrency."""
    return [
        *issue_24(points, observability),
        *issue_25(keys or {}),
        *issue_28(points),
        *earlier(points),
    ]


def _disturbed(*points: Point | None) -> str:
    """``; disturbed: ...`` when other processes used much CPU during any of the points (their
    rps is then the machine's, not the server's: read the CPU-derived ratio beside it)."""
    noisy = [p for p in points if p is not None and p.other_cpu_pct > QUIET_OTHER_CPU_PCT]
    if not noisy:
        return ""
    shown = ", ".join(f"{p.config} c={p.concurrency} {p.other_cpu_pct:.0f} %" for p in noisy)
    return f"; disturbed (other processes' CPU: {shown})"


def _capacity(ours: Point, theirs: Point) -> str:
    """``; CPU-derived 0.71x`` (requests per core-second, from server CPU per request)."""
    if not ours.capacity_rps or not theirs.capacity_rps:
        return ""
    return f"; CPU-derived {ours.capacity_rps / theirs.capacity_rps:.2f}x"


def _vs(point: Point | None, other: Point | None, name: str) -> str:
    """``; 0.91x the <name> (rps)`` when both exist."""
    if point is None or other is None or not other.load.rps:
        return ""
    return f"; {point.load.rps / other.load.rps:.2f}x the {name} ({other.load.rps:.0f} rps)"


def issue_24(points: Sequence[Point], observability: Summary | None) -> list[Ratio]:
    """Issue 24, item 5: measured in one run with default settings (metrics on, tracing at
    the default ratio: the SERVICE and SERVICE_2W rows)."""
    out = []
    for service, ceiling, transport, workers in (
        (SERVICE, CEILING, TRANSPORT, "1 worker"),
        (SERVICE_2W, CEILING_2W, TRANSPORT_2W, "2 workers"),
    ):
        ours, theirs = _at(points, service, 32), _at(points, ceiling, 32)
        if ours and theirs:
            value = ours.load.rps / theirs.load.rps
            met = value >= CEILING_SHARE and ours.load.p95_ms <= P95_BUDGET_MS
            out.append(Ratio(
                f"c=32 {workers}: service (defaults) / hello-world ceiling, p95 <= 20 ms",
                value, f">= {CEILING_SHARE}", met,
                f"{ours.load.rps:.0f} vs {theirs.load.rps:.0f} rps, service p95 "
                f"{ours.load.p95_ms:.1f} ms" + _capacity(ours, theirs)
                + _vs(ours, _at(points, transport, 32), "transport ceiling")
                + _disturbed(ours, theirs),
                "24",
            ))  # fmt: skip
    ours, theirs = _at(points, SERVICE, 32), _at(points, CEILING, 32)
    if ours and theirs and theirs.cpu_us_per_request:
        value = ours.cpu_us_per_request / theirs.cpu_us_per_request
        bare = _at(points, TRANSPORT, 32)
        beside = (
            f"; {ours.cpu_us_per_request / bare.cpu_us_per_request:.2f}x the transport "
            f"ceiling's {bare.cpu_us_per_request:.0f} µs"
            if bare and bare.cpu_us_per_request
            else ""
        )
        out.append(Ratio(
            "server CPU per request at c=32, 1 worker: service (defaults) / ceiling", value,
            f"<= {CPU_SHARE}", value <= CPU_SHARE,
            f"{ours.cpu_us_per_request:.0f} vs {theirs.cpu_us_per_request:.0f} µs" + beside
            + _disturbed(ours, theirs),
            "24",
        ))  # fmt: skip
    svc1, naive1 = _at(points, SERVICE, 1), _at(points, NAIVE, 1)
    if svc1 and naive1:
        delta = svc1.load.p50_ms - naive1.load.p50_ms
        out.append(Ratio(
            "c=1 p50 minus naive p50 (ms)", delta, "<= 0.05 ms", delta <= 0.05,
            f"{svc1.load.p50_ms:.3f} ms vs {naive1.load.p50_ms:.3f} ms", "24",
        ))  # fmt: skip
    obs, plain = _peak(points, SERVICE), _peak(points, V1_JSON)
    if observability is not None:
        low, high = observability.throughput_range
        sweep = (
            f"; sweep peaks {obs.load.rps:.0f} vs {plain.load.rps:.0f} rps" if obs and plain else ""
        )
        out.append(Ratio(
            "tracing + metrics throughput cost", observability.throughput_cost, "<= 0.10",
            observability.throughput_cost <= 0.10,
            f"median of {observability.rounds} A/B windows, loaded together (range "
            f"{low:+.1%} .. {high:+.1%}); CPU per request {observability.cpu_cost:+.1%}"
            + sweep,
            "24",
        ))  # fmt: skip
    elif obs and plain:
        cost = 1 - obs.load.rps / plain.load.rps
        out.append(Ratio(
            "tracing + metrics throughput cost", cost, "<= 0.10", cost <= 0.10,
            f"peak {obs.load.rps:.0f} rps on vs {plain.load.rps:.0f} rps off"
            + _capacity_ratio(points, SERVICE, V1_JSON),
            "24",
        ))  # fmt: skip
    v2_binary = _peak(points, V2_BINARY)
    if v2_binary and plain:
        value = v2_binary.load.rps / plain.load.rps
        out.append(Ratio(
            "v2 binary FP32 / v1 JSON throughput", value, ">= 1.0", value >= 1.0,
            f"peak {v2_binary.load.rps:.0f} rps v2 binary vs {plain.load.rps:.0f} rps v1 JSON"
            + _capacity_ratio(points, V2_BINARY, V1_JSON),
            "24",
        ))  # fmt: skip
    return out


def issue_25(keys: Mapping[int, Summary]) -> list[Ratio]:
    """Issue 25: latency with keys on (require_keys, a valid key sent) within 3 % of off."""
    out = []
    for concurrency, summary in sorted(keys.items()):
        low, high = summary.p50_range
        how = "loaded together" if concurrency > 1 else "interleaved requests, one client"
        out.append(Ratio(
            f"keys on / off, p50 latency at c={concurrency}", summary.p50_ratio,
            f"<= {KEYS_BUDGET}", summary.p50_ratio <= KEYS_BUDGET,
            f"median of {summary.rounds} windows, {how} (range {low:.3f} .. {high:.3f}); "
            f"CPU per request {summary.cpu_cost:+.1%}, throughput on / off "
            f"{1 - summary.throughput_cost:.3f}",
            "25",
        ))  # fmt: skip
    return out


def issue_28(points: Sequence[Point]) -> list[Ratio]:
    """Issue 28: gRPC ModelInfer (raw contents) throughput >= HTTP v2 binary, at c=32; judged
    against the v2 binary row driven by the same generator (h2load), wrk's shown beside."""
    grpc, http = _at(points, GRPC, 32), _at(points, V2_BINARY_H2LOAD, 32)
    if grpc is None or http is None or not http.load.rps:
        return []
    value = grpc.load.rps / http.load.rps
    detail = (
        f"{grpc.load.rps:.0f} vs {http.load.rps:.0f} rps, server CPU per request "
        f"{grpc.cpu_us_per_request:.0f} vs {http.cpu_us_per_request:.0f} µs"
        + _vs(grpc, _at(points, V2_BINARY, 32), "v2 binary row driven by wrk")
    )
    one = _at(points, GRPC_ONE_CONNECTION, 32)
    if one is not None:
        detail += (
            f"; one connection with 32 streams: {one.load.rps:.0f} rps, "
            f"{one.cpu_us_per_request:.0f} µs per request"
        )
    ceiling = _at(points, GRPC_CEILING, 32)
    if ceiling is not None and ceiling.load.rps:
        bound = ceiling.load.rps / http.load.rps
        detail += (
            f"; the gRPC ceiling (grpcio, no service work) {ceiling.load.rps:.0f} rps, "
            f"{ceiling.cpu_us_per_request:.0f} µs per call: {bound:.2f}x HTTP v2 binary, "
            f"the service {grpc.load.rps / ceiling.load.rps:.2f}x of it"
        )
    grpc1, http1 = _at(points, GRPC, 1), _at(points, V2_BINARY_H2LOAD, 1)
    if grpc1 and http1:
        detail += f"; c=1 p50 {grpc1.load.p50_ms:.3f} vs {http1.load.p50_ms:.3f} ms"
    detail += _capacity(grpc, http) + _disturbed(grpc, http)
    met = value >= 1.0 and grpc.load.errors == 0
    return [Ratio("c=32 gRPC raw / HTTP v2 binary throughput", value, ">= 1.0", met, detail, "28")]


def earlier(points: Sequence[Point]) -> list[Ratio]:
    """The targets of the earlier waves (docs/performance.md), still reported."""
    out = []
    batched = _peak(points, V1_JSON, P95_BUDGET_MS)
    unbatched = _peak(points, "service unbatched fp32", P95_BUDGET_MS)
    if batched and unbatched:
        value = batched.load.rps / unbatched.load.rps
        out.append(Ratio(
            "batched / unbatched throughput at p95 <= 20 ms", value, ">= 2", value >= 2,
            f"{batched.load.rps:.0f} rps (c={batched.concurrency}) vs "
            f"{unbatched.load.rps:.0f} rps (c={unbatched.concurrency})"
            + _capacity_ratio(points, V1_JSON, "service unbatched fp32"),
        ))  # fmt: skip
    svc_cost, ceiling_cost = _cheapest(points, V1_JSON), _cheapest(points, CEILING)
    if svc_cost and ceiling_cost:
        service, ceiling = svc_cost.cpu_us_per_request, ceiling_cost.cpu_us_per_request
        value = service / ceiling
        out.append(Ratio(
            "server CPU per request / ceiling (observability off)", value, "<= 1.5",
            value <= 1.5,
            f"{service:.0f} µs (batched fp32, c={svc_cost.concurrency}) vs "
            f"{ceiling:.0f} µs (ceiling, c={ceiling_cost.concurrency}), each the lowest at c >= 8",
        ))  # fmt: skip
    svc1, ceil1 = _at(points, V1_JSON, 1), _at(points, CEILING, 1)
    if svc1 and ceil1:
        delta = svc1.load.p50_ms - ceil1.load.p50_ms
        out.append(Ratio(
            "c=1 p50 minus ceiling p50 (ms)", delta, "<= 0.5 ms", delta <= 0.5,
            f"{svc1.load.p50_ms:.3f} ms vs {ceil1.load.p50_ms:.3f} ms",
        ))  # fmt: skip
    binary, plain = _peak(points, "service batched fp32 binary"), _peak(points, V1_JSON)
    if binary and plain:
        value = binary.load.rps / plain.load.rps
        out.append(Ratio(
            "binary / JSON throughput", value, ">= 1.5", value >= 1.5,
            f"peak {binary.load.rps:.0f} rps binary vs {plain.load.rps:.0f} rps JSON"
            + _capacity_ratio(points, "service batched fp32 binary", V1_JSON),
        ))  # fmt: skip
    return out + against_naive(points)


def against_naive(points: Sequence[Point]) -> list[Ratio]:
    """The targets against the 20-line server (docs/performance.md, "Against the naive server"):
    the service with its default observability must beat it at every load. (Its c=1 p50 is an
    issue-24 target: :func:`issue_24`.)"""
    out = []
    for service, naive, target in ((SERVICE, NAIVE, 1.3), (SERVICE_2W, NAIVE_2W, 1.5)):
        ours, theirs = _at(points, service, 32), _at(points, naive, 32)
        if ours and theirs:
            value = ours.load.rps / theirs.load.rps
            out.append(Ratio(
                f"c=32 {service} / {naive}", value, f">= {target}", value >= target,
                f"{ours.load.rps:.0f} rps (p95 {ours.load.p95_ms:.1f} ms) vs "
                f"{theirs.load.rps:.0f} rps (p95 {theirs.load.p95_ms:.1f} ms)",
            ))  # fmt: skip
    tail = _at(points, SERVICE_2W, 64)
    if tail:
        value = tail.load.p99_ms / tail.load.p95_ms
        out.append(Ratio(
            "c=64 2 workers: p99 / p95", value, "<= 2", value <= 2,
            f"p99 {tail.load.p99_ms:.2f} ms, p95 {tail.load.p95_ms:.2f} ms",
        ))  # fmt: skip
    return out


ISSUES = {
    "24": "Issue 24 (one request pipeline), item 5",
    "25": "Issue 25 (keys), latency with keys on",
    "28": "Issue 28 (gRPC), item 5",
    "": "Earlier targets (docs/performance.md)",
}


def targets_markdown(found: Sequence[Ratio]) -> list[str]:
    """The targets grouped by issue, each with its verdict."""
    lines = ["## Targets", ""]
    for issue, title in ISSUES.items():
        group = [r for r in found if r.issue == issue]
        if group:
            lines += [f"{title}:", "", *[r.line() for r in group], ""]
    return lines


def markdown(
    points: Sequence[Point],
    floor: Sequence[FloorPoint],
    found: Sequence[Ratio],
    header: str,
    plot_name: str,
    costs: str = "",
) -> str:
    lines = [header, ""]
    lines += targets_markdown(found)
    if costs:
        lines += [costs.rstrip(), ""]
    lines += [
        "## onnxruntime in-process floor (intra_op=1, no spinning)",
        "",
        "| variant | batch | median run (µs) | per sample (µs) |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {f.variant} | {f.batch} | {f.median_batch_us:.1f} | {f.per_sample_us:.2f} |"
        for f in floor
    ]
    lines += [
        "",
        "## Closed loop (HTTP: wrk, 1 thread, c keep-alive connections; gRPC and '(h2load)' "
        "rows: h2load)",
        "",
        "| configuration | concurrency | rps | p50 ms | p95 ms | p99 ms | "
        "server CPU/request µs | capacity rps/core | server CPU % | generator CPU % | "
        "other CPU % | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {p.config} | {p.concurrency} | {p.load.rps:.0f} | {p.load.p50_ms:.3f} | "
        f"{p.load.p95_ms:.3f} | {p.load.p99_ms:.3f} | {p.cpu_us_per_request:.0f} | "
        f"{p.capacity_rps:.0f} | {p.server_cpu_pct:.0f} | {p.generator_cpu_pct:.0f} | "
        f"{p.other_cpu_pct:.0f} | {p.load.errors} |"
        for p in points
    ]
    lines += ["", f"![latency vs throughput]({plot_name})", ""]
    return "\n".join(lines)


def plot(points: Sequence[Point], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    for config in dict.fromkeys(p.config for p in points):
        series = sorted(_of(points, config), key=lambda p: p.concurrency)
        ax.plot(
            [p.load.rps for p in series], [p.load.p95_ms for p in series], marker="o", label=config
        )
        for p in series:
            ax.annotate(
                f"c{p.concurrency}",
                (p.load.rps, p.load.p95_ms),
                fontsize=7,
                textcoords="offset points",
                xytext=(3, 3),
            )
    ax.axhline(P95_BUDGET_MS, color="grey", linestyle="--", linewidth=1, label="p95 20 ms")
    ax.set_xlabel("throughput (requests/s)")
    ax.set_ylabel("p95 latency (ms, log)")
    ax.set_yscale("log")
    ax.set_title("one digit per request (server core 0, generator core 1; 2 workers unpinned)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
