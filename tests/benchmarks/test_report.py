"""The report's targets of issues 24, 25 and 28, computed from one run's points: each with its
ratio and its verdict, grouped by issue in the results file."""

from __future__ import annotations

from benchmarks import ab, report
from benchmarks.report import Point, Ratio, markdown, ratios
from benchmarks.wrk import LoadResult


def point(config: str, concurrency: int, rps: float, p50: float = 1.0, p95: float = 5.0,
          cpu_us: float = 100.0) -> Point:  # fmt: skip
    requests = int(rps * 10)
    load = LoadResult(requests, 10.0, 0, p50, p95, p95 * 1.2, 1.0)
    return Point(config, concurrency, load, cpu_us * requests / 1e6, 0.0)


def by_name(found: list[Ratio]) -> dict[str, Ratio]:
    return {r.name: r for r in found}


def test_issue_24_targets_from_one_run() -> None:
    points = [
        point(report.CEILING, 32, 10_000, cpu_us=90),
        point(report.TRANSPORT, 32, 14_000, cpu_us=60),
        point(report.SERVICE, 32, 8_000, cpu_us=120),  # 0.80x, 1.33x the CPU
        point(report.CEILING_2W, 32, 15_000),
        point(report.TRANSPORT_2W, 32, 18_000),
        point(report.SERVICE_2W, 32, 13_500, p95=12.0),  # 0.90x, p95 within 20 ms
        point(report.SERVICE, 1, 4_000, p50=0.20),
        point(report.NAIVE, 1, 4_000, p50=0.17),  # +0.03 ms
        point(report.V1_JSON, 32, 9_000),
        point(report.V2_BINARY, 32, 9_500),
    ]
    found = by_name(ratios(points))
    one = found["c=32 1 worker: service (defaults) / hello-world ceiling, p95 <= 20 ms"]
    assert (round(one.value or 0, 2), one.met, one.issue) == (0.8, False, "24")
    assert "0.57x the transport ceiling" in one.detail
    two = found["c=32 2 workers: service (defaults) / hello-world ceiling, p95 <= 20 ms"]
    assert (round(two.value or 0, 2), two.met) == (0.9, True)
    cpu = found["server CPU per request at c=32, 1 worker: service (defaults) / ceiling"]
    assert (round(cpu.value or 0, 2), cpu.met) == (1.33, False)
    assert "2.00x the transport ceiling's 60 µs" in cpu.detail
    assert found["c=1 p50 minus naive p50 (ms)"].met is True
    assert found["v2 binary FP32 / v1 JSON throughput"].met is True
    # Without the A/B the sweep's peaks decide the observability cost: 8,000 vs 9,000 rps.
    assert found["tracing + metrics throughput cost"].met is False


def test_issue_24_ceiling_share_needs_p95_within_budget() -> None:
    points = [point(report.CEILING_2W, 32, 10_000), point(report.SERVICE_2W, 32, 9_500, p95=25)]
    two = by_name(ratios(points))[
        "c=32 2 workers: service (defaults) / hello-world ceiling, p95 <= 20 ms"
    ]
    assert two.met is False  # 0.95x, but p95 25 ms


def test_issue_28_grpc_against_v2_binary_through_the_same_generator() -> None:
    points = [
        point(report.GRPC, 32, 3_000, cpu_us=330),
        point(report.V2_BINARY_H2LOAD, 32, 7_000, cpu_us=130),
        point(report.V2_BINARY, 32, 7_500, cpu_us=125),
        point(report.GRPC_ONE_CONNECTION, 32, 3_300, cpu_us=300),
        point(report.GRPC, 1, 1_500, p50=0.6),
        point(report.V2_BINARY_H2LOAD, 1, 2_500, p50=0.4),
    ]
    (grpc,) = [r for r in ratios(points) if r.issue == "28"]
    assert grpc.met is False
    assert round(grpc.value or 0, 2) == 0.43
    assert "330 vs 130 µs" in grpc.detail
    assert "0.40x the v2 binary row driven by wrk" in grpc.detail
    assert "one connection with 32 streams: 3300 rps" in grpc.detail
    assert "c=1 p50 0.600 vs 0.400 ms" in grpc.detail


def window(index: int, off_p50: float, on_p50: float, off_cpu: float, on_cpu: float) -> ab.Round:
    return ab.Round(
        index,
        point("keys off", 32, 5_000, p50=off_p50, cpu_us=off_cpu),
        point("keys on", 32, 5_000, p50=on_p50, cpu_us=on_cpu),
    )


def test_issue_25_keys_within_three_percent() -> None:
    c1 = ab.summarize([window(0, 0.300, 0.306, 300, 303), window(1, 0.300, 0.312, 300, 306)])
    c32 = ab.summarize([window(0, 6.0, 6.3, 150, 158), window(1, 6.0, 6.3, 150, 157)])
    assert c1 is not None
    assert c32 is not None
    found = by_name(ratios([], keys={1: c1, 32: c32}))
    at1, at32 = (
        found["keys on / off, p50 latency at c=1"],
        found["keys on / off, p50 latency at c=32"],
    )
    assert (round(at1.value or 0, 3), at1.met, at1.issue) == (1.03, True, "25")
    assert (round(at32.value or 0, 2), at32.met) == (1.05, False)
    assert "CPU per request +5.0%, throughput on / off 1.000" in at32.detail


def test_results_file_groups_targets_by_issue() -> None:
    points = [point(report.CEILING, 32, 10_000), point(report.SERVICE, 32, 9_000)]
    text = markdown(points, [], ratios(points), "# Benchmark", "plot.png", "## Cost table\n")
    lines = text.splitlines()
    assert lines.index("Issue 24 (one request pipeline), item 5:") < lines.index("## Cost table")
    assert any(line.startswith("- [issue 24] c=32 1 worker") and "-> MET" in line for line in lines)


def test_a_disturbed_point_is_flagged_with_the_cpu_derived_ratio() -> None:
    quiet = point(report.SERVICE, 32, 8_000, cpu_us=150)
    ceiling = point(report.CEILING, 32, 2_000, cpu_us=100)  # its core was taken: low rps
    ceiling = Point(ceiling.config, 32, ceiling.load, ceiling.server_cpu_s,
                    ceiling.server_cpu_s + ceiling.load.generator_cpu_s + 15.0)  # fmt: skip
    (line,) = [r for r in ratios([quiet, ceiling]) if r.name.startswith("c=32 1 worker")]
    assert line.met is True  # 4x by rps...
    assert "CPU-derived 0.67x" in line.detail  # ...0.67x by CPU per request
    assert f"disturbed (other processes' CPU: {report.CEILING} c=32 150 %)" in line.detail
