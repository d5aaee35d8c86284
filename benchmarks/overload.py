"""``python -m benchmarks.overload --models models``: the service on its worst day (issue 14).

On loopback, the server pinned to core 0 and this generator (Python, asyncio) to core 1:

1. capacity: 64 keep-alive clients, closed loop;
2. 3x capacity, open loop, for ``--seconds`` (default 10): once on keep-alive connections,
   once with a new connection per request; goodput, 503 p50/p95, accepted p95, 504 share of
   accepted, client timeouts, and the time until idle latency is back;
3. the CPU cost of a 503 (admission refusal) against a 200, per request, in server CPU time;
4. two workers, 32 keep-alive connections: the share of requests each worker served.

Writes ``benchmarks/results/<date>-overload.md``. One small Python generator caps the offered
rate: when it cannot keep up, the report says so (offered vs scheduled).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psutil

from benchmarks.openloop import Load, OpenLoop, Outcome, closed_loop, percentile
from loadtest.data import binary_body, load_digits, mnist_dir
from model_repository.layout import resolve
from serving.testing import ServerProcess, free_port

T = TypeVar("T")
SERVER_CPU = 0
LOAD_CPU = 1
HEADERS = {"Content-Type": "application/octet-stream"}


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """uvloop when installed (the serve extra has it): a faster generator on its one core."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def server(models: Path, log: Path, workers: int = 1) -> ServerProcess:
    env = {
        "SERVING_MODEL_REPOSITORY": str(models),
        "SERVING_WORKERS": str(workers),
        "SERVING_TRACING_ENABLED": "false",
        "SERVING_LOG_LEVEL": "warning",
    }
    cpu = SERVER_CPU if workers == 1 else None
    return ServerProcess(log, env=env, port=free_port(), cpu=cpu, ready_timeout_s=120)


def load_for(srv: ServerProcess, body: bytes, keep_alive: bool = True, **headers: str) -> Load:
    extra = {k.replace("_", "-"): v for k, v in headers.items()}
    return Load(
        "127.0.0.1", srv.port, "/v1/predict", body, {**HEADERS, **extra},
        keep_alive=keep_alive, timeout_s=5.0,
    )  # fmt: skip


def ms(seconds: float) -> str:
    return "n/a" if seconds != seconds else f"{seconds * 1000:.1f}"  # NaN check


def idle_p50(srv: ServerProcess, body: bytes, count: int = 50) -> float:
    outcomes, _ = run(closed_loop(load_for(srv, body), 1, 1.0))
    return statistics.median(o.latency_s for o in outcomes[:count] if o.status == 200)


def recovery_s(srv: ServerProcess, body: bytes, idle: float, limit_s: float = 10.0) -> float:
    """Seconds after the overload until 5 sequential requests in a row are within 2x idle p50."""

    async def probe() -> float:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        request = load_for(srv, body).request()
        from benchmarks.openloop import read_response

        started = time.monotonic()
        streak = 0
        while time.monotonic() - started < limit_s:
            sent = time.monotonic()
            writer.write(request)
            await writer.drain()
            status, _ = await read_response(reader)
            streak = streak + 1 if status == 200 and time.monotonic() - sent <= 2 * idle else 0
            if streak >= 5:
                writer.close()
                return time.monotonic() - started
        writer.close()
        return float("inf")

    return run(probe())


def overload_row(name: str, outcomes: Sequence[Outcome], capacity: float, seconds: float,
                 recovery: float, elapsed: float) -> str:  # fmt: skip
    statuses = Counter(o.status for o in outcomes)
    accepted = statuses[200] + statuses[504]
    ok = [o.latency_s for o in outcomes if o.status == 200]
    shed = [o.latency_s for o in outcomes if o.status == 503]
    goodput = statuses[200] / seconds
    errors = Counter(o.error for o in outcomes if o.status == 0)
    lag = percentile([o.lag_s for o in outcomes], 95)
    return (
        f"| {name} | {len(outcomes) / seconds:.0f} (sent in {elapsed:.1f} s, lag p95 "
        f"{ms(lag)} ms) | {goodput:.0f} ({goodput / capacity:.0%}) | "
        f"{ms(percentile(shed, 50))} / {ms(percentile(shed, 95))} | {ms(percentile(ok, 95))} | "
        f"{statuses[504]} ({statuses[504] / max(accepted, 1):.1%}) | {sum(errors.values())} "
        f"{dict(errors) or ''} | {recovery:.2f} |"
    )


def cpu_per_request(srv: ServerProcess, load: Load, seconds: float) -> tuple[float, Counter[int]]:
    before = srv.cpu_seconds()
    outcomes, _ = run(closed_loop(load, 8, seconds))
    spent = srv.cpu_seconds() - before
    return spent / max(len(outcomes), 1), Counter(o.status for o in outcomes)


def worker_shares(srv: ServerProcess, body: bytes, seconds: float) -> tuple[dict[int, int], int]:
    owners: dict[int, int] = {}

    async def sample() -> dict[int, int]:
        task = asyncio.create_task(closed_loop(load_for(srv, body), 32, seconds))
        while not task.done():
            for child in psutil.Process(srv.process.pid).children():
                try:
                    for conn in child.net_connections(kind="tcp"):
                        if conn.raddr and conn.status == psutil.CONN_ESTABLISHED:
                            owners[conn.raddr.port] = child.pid
                except psutil.NoSuchProcess:
                    continue
            await asyncio.sleep(0.2)
        _, per_port = await task
        return per_port

    per_port = run(sample())
    per_worker: Counter[int] = Counter()
    for port, count in per_port.items():
        per_worker[owners.get(port, 0)] += count
    return dict(per_worker), sum(per_port.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--seconds", type=float, default=10.0, help="per overload run")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    resolve(args.models, "mnist")
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {LOAD_CPU})
    body = binary_body(load_digits(mnist_dir(None), 1)[0])
    log = args.out / "overload-server.log"
    args.out.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# Overload, drain-free: {dt.date.today().isoformat()}",
        "",
        f"`python -m benchmarks.overload --seconds {args.seconds:g}`; 1-row raw requests, server "
        "on core 0, Python asyncio generator on core 1. Other processes shared the machine: "
        "the numbers are indicative.",
        "",
    ]
    with server(args.models, log) as srv:
        idle = idle_p50(srv, body)
        outcomes, _ = run(closed_loop(load_for(srv, body), 64, 3.0))
        capacity = sum(o.status == 200 for o in outcomes) / 3.0
        lines += [f"Capacity (64 keep-alive clients, closed loop): **{capacity:.0f} req/s**; "
                  f"idle p50 {ms(idle)} ms.", "",
                  "| run | offered req/s | goodput req/s (of capacity) | 503 p50 / p95 ms | "
                  "200 p95 ms | 504 (of accepted) | client errors | idle again after s |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        for keep_alive in (True, False):
            name = "keep-alive" if keep_alive else "new connection per request"
            loop = OpenLoop(load_for(srv, body, keep_alive=keep_alive))
            started = time.monotonic()
            result = run(loop.run(3 * capacity, args.seconds))
            elapsed = time.monotonic() - started
            recovery = recovery_s(srv, body, idle)
            lines.append(overload_row(name, result, capacity, args.seconds, recovery, elapsed))
            print(lines[-1], flush=True)
        ok_cpu, ok_statuses = cpu_per_request(srv, load_for(srv, body), 3.0)
        shed_load = load_for(srv, body, X_Request_Timeout_Ms="0.0001")
        shed_cpu, shed_statuses = cpu_per_request(srv, shed_load, 3.0)
    ratio = shed_cpu / ok_cpu
    lines += ["", f"503 CPU cost: {shed_cpu * 1e6:.0f} µs of server CPU per 503 "
              f"({dict(shed_statuses)}) against {ok_cpu * 1e6:.0f} µs per 200 "
              f"({dict(ok_statuses)}): **{ratio:.0%}** of a prediction.", ""]  # fmt: skip
    with server(args.models, log, workers=2) as srv:
        per_worker, total = worker_shares(srv, body, 5.0)
    shares = ", ".join(f"{count / total:.0%}" for count in sorted(per_worker.values()))
    lines += [f"Two workers, 32 keep-alive connections, 5 s: {total} requests, per worker "
              f"{shares} (SO_REUSEPORT per worker).", ""]  # fmt: skip
    report = args.out / f"{dt.date.today().isoformat()}-overload.md"
    report.write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {report}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
