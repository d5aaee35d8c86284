"""``python -m benchmarks.overload --models models``: the service on its worst day (issues 14, 26).

On loopback, the server pinned to core 0 and h2load (benchmarks/h2load.py) on core 1:

1. capacity: 64 clients, closed loop, on keep-alive connections and with a new connection per
   request;
2. the CPU cost of a refusal against a 200, per request, in server CPU time: a 503 (the queue
   cannot take the request: a 2-row request against ``SERVING_MAX_QUEUE_SIZE=1``, refused at
   arrival every time, the path a full queue takes), a 429 (an API key over its rate:
   ``rate_per_s`` tiny, ``burst`` 1; issue 25's target: no dearer than the 503) and a 400 (a
   deadline no idle service could meet, answered by the same protocol path since issue 24);
3. the overload scenarios of issue 26, each run twice, each time on a fresh service: against
   the service alone, and through the shipped HAProxy config (deploy/haproxy/haproxy.cfg, run
   by benchmarks/proxy.py) with its capacity knob set to the capacity measured in 1:
   - 1,000 keep-alive clients back to back (each sends its next request when answered,
     ignoring Retry-After), ``SERVING_MAX_QUEUE_SIZE=64``, 1 s deadline;
   - 3x capacity from keep-alive clients paced together (``--clients``), 1 s deadline;
   - the same with 100 ms deadlines (``X-Request-Timeout-Ms: 100``);
   - 3x the new-connection capacity, one new connection per request (open loop);
   goodput, 503 p50/p95, 200 p95, 504 share of accepted, client timeouts, the time until idle
   latency is back, and the proxy's CPU per request;
4. two workers, 32 keep-alive connections: the share of requests each worker served.

HAProxy runs on core 1 beside h2load: the server keeps a whole core in both runs of a scenario,
so they compare the same service, and the proxy's CPU comes out of the generator's (a lower
"sent" rate) instead. Its CPU per request is reported, to size its own share (a sidecar has one).

Every h2load run is bounded by a request count. Writes ``benchmarks/results/<date>-overload.md``.
The idle, recovery and worker-share probes are small Python clients (benchmarks/openloop.py):
they need neither speed nor a schedule.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil

from benchmarks import h2load
from benchmarks.openloop import Load, closed_loop, percentile, read_response
from benchmarks.proxy import HaproxyProcess
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


def server(
    models: Path, log: Path, workers: int = 1, extra: Mapping[str, str] | None = None
) -> ServerProcess:
    env = {
        "SERVING_MODEL_REPOSITORY": str(models),
        "SERVING_WORKERS": str(workers),
        "SERVING_TRACING_ENABLED": "false",
        "SERVING_LOG_LEVEL": "warning",
        **(extra or {}),
    }
    cpu = SERVER_CPU if workers == 1 else None
    return ServerProcess(log, env=env, port=free_port(), cpu=cpu, ready_timeout_s=120)


def url(srv: ServerProcess) -> str:
    return srv.base_url + "/v1/predict"


def headers(**extra: str) -> dict[str, str]:
    return {**HEADERS, **{k.replace("_", "-"): v for k, v in extra.items()}}


def load_for(port: int, body: bytes, keep_alive: bool = True, **headers: str) -> Load:
    extra = {k.replace("_", "-"): v for k, v in headers.items()}
    return Load(
        "127.0.0.1", port, "/v1/predict", body, {**HEADERS, **extra},
        keep_alive=keep_alive, timeout_s=5.0,
    )  # fmt: skip


def ms(seconds: float) -> str:
    return "n/a" if seconds != seconds else f"{seconds * 1000:.1f}"  # NaN check


def idle_p50(port: int, body: bytes, count: int = 50) -> float:
    outcomes, _ = run(closed_loop(load_for(port, body), 1, 1.0))
    return statistics.median(o.latency_s for o in outcomes[:count] if o.status == 200)


def recovery_s(port: int, body: bytes, idle: float, limit_s: float = 10.0) -> float:
    """Seconds after the overload until 5 sequential requests in a row are within 2x idle p50."""

    async def probe() -> float:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        request = load_for(port, body).request()
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


@dataclass(frozen=True)
class Scenario:
    """One overload shape of issue 26: ``load(url)`` runs it against ``url``; its goodput is
    measured against ``reference`` (the keep-alive or the new-connection capacity of the
    service alone)."""

    name: str
    load: Callable[[str], h2load.Run]
    reference: float
    #: Service settings of this scenario, on top of the defaults.
    server_env: Mapping[str, str] = field(default_factory=dict)
    #: Proxy settings of this scenario, on top of the shipped file and the measured capacity.
    proxy_env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Result:
    """One run of a scenario, ``via`` "alone" or "proxy"."""

    scenario: str
    via: str
    run: h2load.Run
    reference: float
    seconds: float
    recovery_s: float
    #: HAProxy CPU seconds per request started (proxy runs).
    proxy_cpu_s: float | None = None

    @property
    def statuses(self) -> Counter[int]:
        return Counter(o.status for o in self.run.outcomes)

    @property
    def goodput(self) -> float:
        """200s per second over the run (at least its scheduled time), of the reference."""
        return self.statuses[200] / max(self.seconds, self.run.elapsed_s) / self.reference

    def latencies(self, status: int) -> list[float]:
        return [o.latency_s for o in self.run.outcomes if o.status == status]

    def row(self) -> str:
        done, statuses = self.run, self.statuses
        accepted = statuses[200] + statuses[504]
        span = max(self.seconds, done.elapsed_s)
        shed, ok = self.latencies(503), self.latencies(200)
        cpu = "" if self.proxy_cpu_s is None else f"{self.proxy_cpu_s * 1e6:.0f}"
        return (
            f"| {self.scenario} | {self.via} | {done.scheduled / self.seconds:.0f} | "
            f"{done.started / span:.0f} | {done.elapsed_s:.1f} | "
            f"{statuses[200] / span:.0f} ({self.goodput:.0%}) | "
            f"{ms(percentile(shed, 50))} / {ms(percentile(shed, 95))} | {ms(percentile(ok, 95))} | "
            f"{statuses[504]} ({statuses[504] / max(accepted, 1):.1%}) | "
            f"{done.timeouts} / {done.errors} | {self.recovery_s:.2f} | {cpu} |"
        )


TABLE_HEAD = [
    "| scenario | via | scheduled req/s | sent req/s (over the run) | took s | goodput req/s (of "
    "capacity) | 503 p50 / p95 ms | 200 p95 ms | 504 (of accepted) | client timeouts / errors "
    "| idle again after s | proxy CPU µs/req |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
]


def scenarios(
    body: bytes, capacity: float, fresh_capacity: float, seconds: float, clients: int,
    closed_clients: int,
) -> list[Scenario]:  # fmt: skip
    """The four shapes, sized from the measured capacities; each bounded by a request count."""
    back_to_back = max(closed_clients, int(capacity * seconds))
    short = headers(X_Request_Timeout_Ms="100")
    # The setting: 64 rows queued at most (and so at most 64 rows per request).
    queue_64 = {"SERVING_MAX_QUEUE_SIZE": "64", "SERVING_MAX_INSTANCES": "64"}
    return [
        Scenario(f"{closed_clients:,} keep-alive clients back to back, queue 64, 1 s deadline",
                 lambda target: h2load.closed_loop(target, body, closed_clients, back_to_back,
                                                   headers(), LOAD_CPU),
                 capacity, server_env=queue_64,
                 # The proxy lets in no more than the service queues (docs/deploy.md).
                 proxy_env={"PROXY_BACKEND_MAXCONN": "64"}),
        Scenario(f"3x capacity, {clients} paced keep-alive clients, 1 s deadline",
                 lambda target: h2load.keep_alive(target, body, 3 * capacity, seconds,
                                                  headers(), LOAD_CPU, clients),
                 capacity),
        Scenario(f"3x capacity, {clients} paced keep-alive clients, 100 ms deadlines",
                 lambda target: h2load.keep_alive(target, body, 3 * capacity, seconds, short,
                                                  LOAD_CPU, clients),
                 capacity),
        Scenario("3x new-connection capacity, a new connection per request (open loop)",
                 lambda target: h2load.new_connections(target, body, 3 * fresh_capacity,
                                                       seconds, headers(), LOAD_CPU),
                 fresh_capacity),
    ]  # fmt: skip


def run_scenarios(
    models: Path, body: bytes, all_scenarios: list[Scenario], capacity: float, seconds: float,
    log_dir: Path, server_env: Mapping[str, str] | None = None,
) -> Iterator[Result]:  # fmt: skip
    """Each scenario on a fresh service alone, then on another through the proxy (so that one
    run's after-effects, e.g. the CPU rise after a new-connection storm, miss the other), the
    proxy's capacity knob set to ``capacity``. The idle probes go the way the run went."""
    proxy_env = {"PROXY_CAPACITY": str(int(capacity))}
    server_log, proxy_log = log_dir / "overload-server.log", log_dir / "overload-haproxy.log"
    for scenario in all_scenarios:
        env = {**(server_env or {}), **scenario.server_env}
        with server(models, server_log, extra=env) as srv:
            idle = idle_p50(srv.port, body)
            done = scenario.load(url(srv))
            recovery = recovery_s(srv.port, body, idle)
        yield Result(scenario.name, "alone", done, scenario.reference, seconds, recovery)
        with (
            server(models, server_log, extra=env) as srv,
            HaproxyProcess(
                srv.port, proxy_log, env={**proxy_env, **scenario.proxy_env}, cpu=LOAD_CPU
            ) as proxy,
        ):
            idle = idle_p50(proxy.port, body)
            before = proxy.cpu_seconds()
            done = scenario.load(proxy.base_url + "/v1/predict")
            cpu = (proxy.cpu_seconds() - before) / max(done.started, 1)
            recovery = recovery_s(proxy.port, body, idle)
        yield Result(scenario.name, "proxy", done, scenario.reference, seconds, recovery, cpu)


def cpu_per_request(
    srv: ServerProcess, body: bytes, requests: int, **extra: str
) -> tuple[float, Counter[int]]:
    """Server CPU seconds per request of 8 closed-loop keep-alive clients, and the statuses."""
    before = srv.cpu_seconds()
    done = h2load.closed_loop(url(srv), body, 8, requests, headers(**extra), LOAD_CPU)
    spent = srv.cpu_seconds() - before
    return spent / max(len(done.outcomes), 1), Counter(o.status for o in done.outcomes)


#: The refusal server's keys: one unlimited, one over its rate after its first request.
OPEN_KEY = "overload-open-key-0123456789abcdef"
LIMITED_KEY = "overload-limited-key-0123456789abc"
REFUSAL_KEYS = (
    f'[[keys]]\nname = "open"\nkey = "{OPEN_KEY}"\nscopes = ["infer"]\n\n'
    f'[[keys]]\nname = "limited"\nkey = "{LIMITED_KEY}"\nscopes = ["infer"]\n'
    "rate_per_s = 0.001\nburst = 1\n"
)


@dataclass(frozen=True)
class RefusalCosts:
    """Server CPU seconds per answer, by kind, and the statuses each kind got."""

    ok: float
    shed: float  # 503, queue full at arrival
    limited: float  # 429, key over its rate
    infeasible: float  # 400, a deadline no idle service meets
    statuses: dict[str, dict[int, int]]

    def lines(self) -> list[str]:
        # CPU time ticks in 10 ms: a tiny run can read 0 (the ratios are then n/a).
        share = f"{self.shed / self.ok:.0%}" if self.ok else "n/a"
        ratio = f"{self.limited / self.shed:.2f}" if self.shed else "n/a"
        met = "MET" if self.limited <= self.shed else "NOT MET"
        return [
            f"Refusal CPU cost (8 keep-alive clients, server CPU per answer): a 200 costs "
            f"{self.ok * 1e6:.0f} µs ({self.statuses['200']}); a 503 (queue full at arrival) "
            f"{self.shed * 1e6:.0f} µs ({self.statuses['503']}): **{share}** of a prediction; "
            f"a 429 (API key over its rate) {self.limited * 1e6:.0f} µs "
            f"({self.statuses['429']}): **{ratio}x a 503** (issue 25: <= 1.0 -> {met}); a 400 "
            f"(infeasible deadline) {self.infeasible * 1e6:.0f} µs ({self.statuses['400']}).",
            "",
        ]


def refusal_costs(
    models: Path, body: bytes, requests: int, log: Path, work: Path, rounds: int = 3
) -> RefusalCosts:
    """The CPU cost of each kind of answer. 200 and 400 on a default service; 503 and 429 on
    one service with a one-row queue and a keys file, both with the same two-row body (so the
    bytes read and dropped are the same), measured in alternating rounds (the median kept:
    the VM's speed drifts over seconds)."""
    with server(models, log) as srv:
        ok, ok_statuses = cpu_per_request(srv, body, requests)
        late, late_statuses = cpu_per_request(srv, body, requests, X_Request_Timeout_Ms="0.0001")
    keys = work / "overload-keys.toml"
    keys.write_text(REFUSAL_KEYS)
    env = {"SERVING_KEYS_FILE": str(keys), "SERVING_MAX_QUEUE_SIZE": "1",
           "SERVING_MAX_INSTANCES": "1"}  # fmt: skip
    two_rows = body * 2
    shed: list[float] = []
    limited: list[float] = []
    statuses: dict[str, Counter[int]] = {"503": Counter(), "429": Counter()}
    per_round = max(1, requests // rounds)
    with server(models, log, extra=env) as srv:
        for index in range(rounds):
            kinds = [("503", OPEN_KEY, shed), ("429", LIMITED_KEY, limited)]
            for name, key, costs in kinds if index % 2 == 0 else kinds[::-1]:
                cost, got = cpu_per_request(srv, two_rows, per_round,
                                            Authorization=f"Bearer {key}")  # fmt: skip
                costs.append(cost)
                statuses[name] += got
    return RefusalCosts(
        ok, statistics.median(shed), statistics.median(limited), late,
        {"200": dict(ok_statuses), "400": dict(late_statuses),
         **{name: dict(counts) for name, counts in statuses.items()}},
    )  # fmt: skip


def worker_shares(srv: ServerProcess, body: bytes, seconds: float) -> tuple[dict[int, int], int]:
    owners: dict[int, int] = {}

    async def sample() -> dict[int, int]:
        task = asyncio.create_task(closed_loop(load_for(srv.port, body), 32, seconds))
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
    parser.add_argument("--clients", type=int, default=900, help="paced keep-alive clients")
    parser.add_argument(
        "--closed-clients", type=int, default=1000, help="back-to-back keep-alive clients"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument(
        "--refusals", type=int, default=10_000, help="requests per kind of answer (CPU costs)"
    )
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
        f"`python -m benchmarks.overload --seconds {args.seconds:g} --clients {args.clients} "
        f"--closed-clients {args.closed_clients}`; 1-row raw requests, default settings, server "
        "on core 0, h2load on core 1. Capacity: 64 clients, closed loop. Each scenario on a "
        "fresh service, alone and through the shipped HAProxy config (on core 1 beside h2load, "
        f"`PROXY_CAPACITY` = the capacity below). Client timeout {h2load.TIMEOUT_S} s.",
        "",
    ]
    with server(args.models, log) as srv:
        idle = idle_p50(srv.port, body)
        measured = h2load.closed_loop(url(srv), body, 64, 25_000, headers(), LOAD_CPU)
        capacity = sum(o.status == 200 for o in measured.outcomes) / measured.elapsed_s
        fresh = h2load.closed_loop(
            url(srv), body, 64, int(capacity * 3), headers(), LOAD_CPU, new_connections=True
        )
        fresh_capacity = sum(o.status == 200 for o in fresh.outcomes) / fresh.elapsed_s
    lines += [f"Capacity, 64 clients in closed loop: **{capacity:.0f} req/s** on keep-alive "
              f"connections, **{fresh_capacity:.0f} req/s** with a new connection per request; "
              f"idle p50 {ms(idle)} ms. Goodput is against the first, or the second for the "
              "new-connection scenario.", "", *TABLE_HEAD]  # fmt: skip
    overloads = scenarios(
        body, capacity, fresh_capacity, args.seconds, args.clients, args.closed_clients
    )
    for result in run_scenarios(args.models, body, overloads, capacity, args.seconds, args.out):
        lines.append(result.row())
        print(lines[-1], flush=True)
    with tempfile.TemporaryDirectory(prefix="overload-") as keys_dir:  # the keys file
        costs = refusal_costs(args.models, body, args.refusals, log, Path(keys_dir))
    lines += ["", *costs.lines()]
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
