"""``python -m benchmarks.instructions``: the cost of tracing and metrics in instructions/request.

Wall-clock A/B runs on this kind of VM move by ~15 % between identical runs, more than the cost
being measured. Instructions retired do not: ``valgrind --tool=callgrind`` counts them the same
whatever else the machine does. Each configuration runs :mod:`benchmarks.inprocess` (the real
app, in-process clients, no sockets) twice under callgrind, with a small and a large request
count; the difference divided by the extra requests is the cost of one request with start-up,
model load and shutdown cancelled out. Instructions are not time (a cache miss costs more than an
add), so ``make bench`` still measures throughput; this says where the cost is and whether a
change reduced it, repeatably.

Tracing runs export to a real OTLP/HTTP receiver (``benchmarks.otlp_sink``) when one can be
started, so span encoding and export are counted too, and sample with a seeded ``random`` (the
same requests are traced in every run). Writes ``benchmarks/results/<date>-instructions.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from benchmarks.__main__ import start_otlp_sink, stop_otlp_sink

COLLECTED = re.compile(rb"Collected : (\d+)")

CONFIGS = {
    "off": {"SERVING_TRACING_ENABLED": "false", "SERVING_METRICS_ENABLED": "false"},
    "metrics": {"SERVING_TRACING_ENABLED": "false", "SERVING_METRICS_ENABLED": "true"},
    "tracing": {"SERVING_TRACING_ENABLED": "true", "SERVING_METRICS_ENABLED": "false"},
    "tracing + metrics": {"SERVING_TRACING_ENABLED": "true", "SERVING_METRICS_ENABLED": "true"},
}


@dataclass(frozen=True, slots=True)
class Run:
    config: str
    requests: int
    instructions: int
    batches: int
    rows: int


@dataclass(frozen=True, slots=True)
class Cost:
    config: str
    per_request: float  # instructions
    requests: int  # the extra requests the difference is over
    batches: int  # in the large run


def run_once(config: str, requests: int, args: argparse.Namespace, env: dict[str, str]) -> Run:
    with tempfile.TemporaryDirectory(prefix="cg-") as tmp:
        cmd = [
            "valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/callgrind.out",
            sys.executable, "-m", "benchmarks.inprocess", "--requests", str(requests),
            "--concurrency", str(args.concurrency),
        ]  # fmt: skip
        if args.mnist_dir:
            cmd += ["--mnist-dir", args.mnist_dir]
        done = subprocess.run(cmd, env=env, capture_output=True, check=False)
    found = COLLECTED.search(done.stderr)
    result_line = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else b"{}"
    if done.returncode != 0 or found is None:
        raise RuntimeError(
            f"{config} ({requests} requests) failed ({done.returncode}): "
            f"{done.stdout.decode()[-500:]} {done.stderr.decode()[-1500:]}"
        )
    result = json.loads(result_line)
    run = Run(config, requests, int(found.group(1)), result["batches"], result["rows"])
    print(f"  {config:<18} {requests:>6} requests: {run.instructions:,} instructions, "
          f"{run.batches} batches", flush=True)  # fmt: skip
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--small", type=int, default=500, help="requests in the small run")
    parser.add_argument("--large", type=int, default=4500, help="requests in the large run")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--mnist-dir", default=None)
    parser.add_argument(
        "--configs", default="", help=f"comma-separated subset of: {', '.join(CONFIGS)}"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("valgrind not found: apt-get install valgrind", file=sys.stderr)
        return 2

    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="instructions-"))
    sink, endpoint, sink_desc = start_otlp_sink(work / "otlp-sink.log")
    base_env = {
        **os.environ,
        "PYTHONHASHSEED": "0",  # dict/set layouts, hence instruction counts, repeat run to run
        "SERVING_MODEL_REPOSITORY": str(args.models),
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        # Under valgrind everything runs ~50x slower: the default deadline would turn into 504s.
        "SERVING_REQUEST_TIMEOUT_MS": "600000",
        "SERVING_MAX_REQUEST_TIMEOUT_MS": "600000",
        # The span processor exports every 5 s of WALL time: ~100 requests under valgrind, ~25,000
        # at full speed. Export by batch size (512 spans) and at shutdown instead, as under load.
        "OTEL_BSP_SCHEDULE_DELAY": "600000",
        # Likewise the gauge sampler (CPU, memory, drift PSI): every 5 s of wall time would be
        # ~50x more often per request than at full speed. Scrapes are not part of the workload.
        "SERVING_METRICS_SAMPLE_INTERVAL_S": "600",
    }
    names = [n.strip() for n in args.configs.split(",")] if args.configs else list(CONFIGS)
    configs = {name: CONFIGS[name] for name in names}
    jobs = [(name, n) for name in configs for n in (args.small, args.large)]

    def run_job(job: tuple[str, int]) -> Run:
        name, requests = job
        return run_once(name, requests, args, {**base_env, **configs[name]})

    try:
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            runs = list(pool.map(run_job, jobs))
    finally:
        stop_otlp_sink(sink, work / "otlp-sink.log")
        shutil.rmtree(work, ignore_errors=True)

    costs = []
    for name in configs:
        small = next(r for r in runs if r.config == name and r.requests == args.small)
        large = next(r for r in runs if r.config == name and r.requests == args.large)
        extra = large.requests - small.requests
        costs.append(
            Cost(name, (large.instructions - small.instructions) / extra, extra, large.batches)
        )
    base = next((c for c in costs if c.config == "off"), None)
    lines = [
        f"# Instructions per request {dt.date.today().isoformat()}",
        "",
        f"- Command: `python -m benchmarks.instructions --models {args.models}`; "
        f"{time.monotonic() - started:.0f} s.",
        f"- Each configuration: `benchmarks.inprocess` (real app, {args.concurrency} in-process "
        f"clients, one MNIST digit per JSON request) under callgrind with {args.small} and "
        f"{args.large} requests; per request = difference of the totals / "
        f"{args.large - args.small}.",
        f"- Tracing exports to {sink_desc}; default sample ratio unless SERVING_TRACE_SAMPLE_RATIO "
        "is set in the environment.",
        "",
        "| configuration | instructions / request | vs off | batches (large run) |",
        "|---|---:|---:|---:|",
    ]
    for cost in costs:
        delta = f"{cost.per_request / base.per_request - 1:+.1%}" if base else "-"
        lines.append(f"| {cost.config} | {cost.per_request:,.0f} | {delta} | {cost.batches} |")
    text = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"{dt.date.today().isoformat()}-instructions.md"
    out.write_text(text)
    print(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
