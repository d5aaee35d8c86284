"""``python -m benchmarks.overload --models models``: the service on its worst day (issue 14).

On loopback, the server pinned to core 0 and h2load (benchmarks/h2load.py) on core 1:

1. capacity: 64 clients, closed loop, on keep-alive connections and with a new connection per
   request;
2. the CPU cost of a 503 (admission refusal) against a 200, per request, in server CPU time;
3. 3x capacity for ``--seconds`` (default 10): keep-alive clients paced together (with the
   default deadline and with 100 ms deadlines), and a new connection per request (open loop);
   goodput, 503 p50/p95, accepted p95, 504 share of accepted, client timeouts, and the time
   until idle latency is back;
4. two workers, 32 keep-alive connections: the share of requests each worker served.

Writes ``benchmarks/results/<date>-overload.md``. The idle, recovery and worker-share probes are
small Python clients (benchmarks/openloop.py): they need neither speed nor a schedule.
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
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import psutil

from benchmarks import h2load
from benchmarks.openloop import Load, closed_loop, percentile
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


def url(srv: ServerProcess) -> str:
    return srv.base_url + "/v1/predict"


def headers(**extra: str) -> dict[str, str]:
    return {**HEADERS, **{k.replace("_", "-"): v for k, v in extra.items()}}


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


def overload_row(name: str, run: h2load.Run, capacity: float, seconds: float,
                 recovery: float) -> str:  # fmt: skip
    statuses = Counter(o.status for o in run.outcomes)
    accepted = statuses[200] + statuses[504]
    ok = [o.latency_s for o in run.outcomes if o.status == 200]
    shed = [o.latency_s for o in run.outcomes if o.status == 503]
    goodput = statuses[200] / max(seconds, run.elapsed_s)
    return (
        f"| {name} | {run.scheduled / seconds:.0f} | "
        f"{run.started / max(seconds, run.elapsed_s):.0f} | "
        f"{run.elapsed_s:.1f} | {goodput:.0f} ({goodput / capacity:.0%}) | "
        f"{ms(percentile(shed, 50))} / {ms(percentile(shed, 95))} | {ms(percentile(ok, 95))} | "
        f"{statuses[504]} ({statuses[504] / max(accepted, 1):.1%}) | {run.timeouts} / "
        f"{run.errors} | {recovery:.2f} |"
    )


def cpu_per_request(
    srv: ServerProcess, body: bytes, requests: int, **extra: str
) -> tuple[float, Counter[int]]:
    """Server CPU seconds per request of 8 closed-loop keep-alive clients, and the statuses."""
    before = srv.cpu_seconds()
    done = h2load.closed_loop(url(srv), body, 8, requests, headers(**extra), LOAD_CPU)
    spent = srv.cpu_seconds() - before
    return spent / max(len(done.outcomes), 1), Counter(o.status for o in done.outcomes)


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
    parser.add_argument("--clients", type=int, default=900, help="keep-alive overload clients")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    resolve(args.models, "mnist")
    if not h2load.available():
        print("h2load not found: apt-get install nghttp2-client", file=sys.stderr)
        return 2
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {LOAD_CPU})
    body = binary_body(load_digits(mnist_dir(None), 1)[0])
    log = args.out / "overload-server.log"
    args.out.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# Overload: {dt.date.today().isoformat()}",
        "",
        f"`python -m benchmarks.overload --seconds {args.seconds:g} --clients {args.clients}`; "
        "1-row raw requests, default settings, server on core 0, h2load on core 1. Capacity: "
        "64 clients, closed loop. Then 3x capacity: keep-alive "
        f"({args.clients} clients at 3x capacity together), and one new connection per request "
        f"(open loop). Client timeout {h2load.TIMEOUT_S} s.",
        "",
    ]
    with server(args.models, log) as srv:
        idle = idle_p50(srv, body)
        measured = h2load.closed_loop(url(srv), body, 64, 25_000, headers(), LOAD_CPU)
        capacity = sum(o.status == 200 for o in measured.outcomes) / measured.elapsed_s
        fresh = h2load.closed_loop(
            url(srv), body, 64, int(capacity * 3), headers(), LOAD_CPU, new_connections=True
        )
        fresh_capacity = sum(o.status == 200 for o in fresh.outcomes) / fresh.elapsed_s
        lines += [f"Capacity, 64 clients in closed loop: **{capacity:.0f} req/s** on keep-alive "
                  f"connections, **{fresh_capacity:.0f} req/s** with a new connection per "
                  f"request; idle p50 {ms(idle)} ms.", "",
                  "| run | scheduled req/s | sent req/s (over the run) | took s | goodput req/s "
                  "(of capacity) "
                  "| 503 p50 / p95 ms | 200 p95 ms | 504 (of accepted) | client timeouts / "
                  "errors | idle again after s |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        # Before the overload runs: after the new-connection one, the server's CPU per request
        # stays ~2x higher for 10-30 s (docs/performance.md#overload).
        ok_cpu, ok_statuses = cpu_per_request(srv, body, 10_000)
        shed_cpu, shed_statuses = cpu_per_request(srv, body, 10_000, X_Request_Timeout_Ms="0.0001")
        seconds, clients = args.seconds, args.clients
        runs: list[tuple[str, Callable[[], h2load.Run], float]] = [
            (f"keep-alive, {clients} clients, default deadline (1 s)",
             lambda: h2load.keep_alive(
                 url(srv), body, 3 * capacity, seconds, headers(), LOAD_CPU, clients),
             capacity),
            (f"keep-alive, {clients} clients, X-Request-Timeout-Ms: 100",
             lambda: h2load.keep_alive(url(srv), body, 3 * capacity, seconds,
                                       headers(X_Request_Timeout_Ms="100"), LOAD_CPU, clients),
             capacity),
            ("new connection per request (open loop)",
             lambda: h2load.new_connections(
                 url(srv), body, 3 * fresh_capacity, seconds, headers(), LOAD_CPU),
             fresh_capacity),
        ]  # fmt: skip
        for name, overload, reference in runs:
            done = overload()
            recovery = recovery_s(srv, body, idle)
            lines.append(overload_row(name, done, reference, seconds, recovery))
            print(lines[-1], flush=True)
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
