"""``python -m benchmarks --models models [--quick]``: the cost table, the onnxruntime floor, the
HTTP ceilings, the service's configurations (HTTP and gRPC), and the A/B comparisons.

On loopback, the server under test is pinned to core 0 and the load generator (wrk; h2load for
gRPC) to core 1. Writes ``benchmarks/results/<date>.md`` and ``<date>.png`` and prints each
target with its verdict. Bounded: about 10 minutes on a quiet machine (``--quick``: about 2).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import functools
import json
import os
import platform
import resource
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import psutil

from benchmarks import ab, floor, h2load, h2sweep, interleaved, report, wrk
from benchmarks.report import Point, markdown, plot, ratios
from loadtest.data import binary_body, json_body, load_digits, mnist_dir
from loadtest.oip import HEADER_LENGTH, INFER_PATH, v2_binary_body, v2_json_body
from model_repository.layout import resolve
from serving.testing import ServerProcess, free_port, pinned

SERVER_CPU = 0
LOAD_CPU = 1
#: Unrecorded load on a fresh server before its points (first calls, caches, JIT-less warm-up).
WARM_UP_S = 2.0


@dataclass(frozen=True, slots=True)
class Config:
    name: str
    #: service (python -m serving), ceiling / transport (benchmarks.ceiling --app litestar /
    #: transport; with protocol grpc, its gRPC ceiling too) or naive (benchmarks.naive).
    server: str = "service"
    binary: bool = False
    #: v1, v2 (HTTP) or grpc (ModelInfer, raw FP32 contents).
    protocol: str = "v1"
    #: More than one worker runs unpinned: each server owns the machine, as deployed.
    workers: int = 1
    env: dict[str, str] = field(default_factory=dict)
    #: wrk (HTTP/1.1, cycling 500 digits) or h2load (one digit; gRPC always goes this way).
    generator: str = "wrk"
    #: gRPC: calls in flight per connection (h2load -m); 1: one connection per call in flight.
    streams: int = 1
    #: The concurrencies to measure; None: the sweep's.
    concurrencies: tuple[int, ...] | None = None


OFF = {"SERVING_TRACING_ENABLED": "false", "SERVING_METRICS_ENABLED": "false"}
BATCHED = Config("service batched fp32", env={**OFF, "SERVING_MODEL_VARIANT": "fp32"})
OBSERVED = Config(
    report.SERVICE, env={"SERVING_TRACING_ENABLED": "true", "SERVING_METRICS_ENABLED": "true"}
)
DEFAULTS = {"SERVING_TRACING_ENABLED": "true", "SERVING_METRICS_ENABLED": "true"}
#: Issue 28: gRPC beside HTTP v2 binary and v1 JSON, at c=1 and c=32.
C1_C32 = (1, 32)
CONFIGS = [
    Config(report.CEILING, server="ceiling"),
    Config(report.TRANSPORT, server="transport"),
    Config(report.NAIVE, server="naive"),
    Config("service unbatched fp32", env={**OFF, "SERVING_MAX_BATCH_SIZE": "1"}),
    BATCHED,
    Config("service batched int8", env={**OFF, "SERVING_MODEL_VARIANT": "int8"}),
    Config("service batched fp32 binary", binary=True, env={**OFF}),
    Config("service batched v2 json", protocol="v2", env={**OFF}),
    Config(report.V2_BINARY, protocol="v2", binary=True, env={**OFF}),
    Config(report.V2_BINARY_H2LOAD, protocol="v2", binary=True, env={**OFF},
           generator="h2load", concurrencies=C1_C32),
    Config(report.GRPC_CEILING, server="transport", protocol="grpc", generator="h2load",
           concurrencies=C1_C32),
    Config(report.GRPC, protocol="grpc", env={**OFF}, generator="h2load",
           concurrencies=C1_C32),
    Config(report.GRPC_ONE_CONNECTION, protocol="grpc", env={**OFF}, generator="h2load",
           streams=32, concurrencies=(32,)),
    OBSERVED,
    Config(report.CEILING_2W, server="ceiling", workers=2),
    Config(report.TRANSPORT_2W, server="transport", workers=2),
    Config(report.NAIVE_2W, server="naive", workers=2),
    Config(report.SERVICE_2W, workers=2, env=DEFAULTS),
]  # fmt: skip
#: Issue 25: keys on (a keys file, SERVING_REQUIRE_KEYS, the client sending a valid key)
#: against the same service without keys.
KEY = "bench-key-0123456789abcdef0123456789"
KEYS_FILE = f'[[keys]]\nname = "bench"\nkey = "{KEY}"\nscopes = ["infer", "read"]\n'
KEYS_ON = Config(
    "service batched fp32 + keys",
    env={**OFF, "SERVING_REQUIRE_KEYS": "true"},  # SERVING_KEYS_FILE: set when written
)
#: Concurrency of each server in the observability A/B: the batched service's usual peak.
AB_CONCURRENCY = 32


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def start_otlp_sink(log: Path) -> tuple[subprocess.Popen[bytes] | None, str, str]:
    """A quiet OTLP/HTTP receiver (``benchmarks.otlp_sink``) on core 1, else a closed port."""
    port = free_port()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            pinned([sys.executable, "-m", "benchmarks.otlp_sink", "--port", str(port)], LOAD_CPU),
            stdout=out,
            stderr=out,
        )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and proc.poll() is None:
        if _listening(port):
            return proc, f"http://127.0.0.1:{port}", "benchmarks.otlp_sink (OTLP/HTTP, core 1)"
        time.sleep(0.1)
    proc.terminate()
    proc.wait()
    closed = free_port()
    return None, f"http://127.0.0.1:{closed}", f"closed port {closed} (receiver did not start)"


def stop_otlp_sink(sink: subprocess.Popen[bytes] | None, log: Path) -> dict[str, int]:
    """Stop the receiver; its totals (requests, spans, bytes, errors), empty if none."""
    if sink is None:
        return {}
    sink.terminate()
    sink.wait()
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("OTLPSINK "):
            totals: dict[str, int] = json.loads(line.removeprefix("OTLPSINK "))
            return totals
    return {}


def _server(config: Config, args: argparse.Namespace, endpoint: str, log: Path) -> ServerProcess:
    port = free_port()
    common = ["--port", str(port), "--workers", str(config.workers)]
    grpc_port = str(free_port())
    if config.server in ("ceiling", "transport"):
        app = "litestar" if config.server == "ceiling" else "transport"
        server_args = ["-m", "benchmarks.ceiling", "--app", app, *common]
        if config.protocol == "grpc":  # the gRPC ceiling, beside the HTTP app
            server_args += ["--grpc-port", grpc_port]
    elif config.server == "naive":
        model = resolve(args.models, args.model_name).model_file("fp32")
        server_args = ["-m", "benchmarks.naive", "--model", str(model), *common]
    else:
        server_args = ["-m", "serving", "--model-repository", str(args.models), *common]
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, **config.env}
    if config.protocol == "grpc":
        env["SERVING_GRPC_PORT"] = grpc_port  # where _shape and the check find it
    cpu = SERVER_CPU if config.workers == 1 else None
    return ServerProcess(log, args=server_args, env=env, port=port, cpu=cpu, ready_timeout_s=120)


@dataclass(frozen=True, slots=True)
class Workload:
    """What a configuration's requests carry: wrk's bodies (500 digits) and target, and the
    one body h2load posts (the first digit; for gRPC a serialized ModelInferRequest)."""

    bodies: Path
    target: wrk.Target
    body: bytes


def _shape(
    server: ServerProcess, config: Config, work: Workload, concurrency: int, verified: int
) -> h2sweep.Shape:
    """The h2load load of one point: gRPC calls to the server's gRPC port (``verified``: the
    size of a successful response frame), or HTTP/1.1 posts of the workload's body."""
    if config.protocol == "grpc":
        streams = min(config.streams, concurrency)
        return h2sweep.Shape(
            f"http://127.0.0.1:{server.env['SERVING_GRPC_PORT']}{h2sweep.MODEL_INFER}",
            work.body, grpc=True, clients=max(1, concurrency // streams), streams=streams,
            response_frame_bytes=verified,
        )  # fmt: skip
    headers = [("content-type", work.target.content_type), *work.target.headers]
    if work.target.header_length is not None:
        headers.append((HEADER_LENGTH, str(work.target.header_length)))
    return h2sweep.Shape(
        server.base_url + work.target.path, work.body, grpc=False, clients=concurrency,
        headers=tuple(headers),
    )  # fmt: skip


def _machine_busy() -> float:
    """Busy CPU seconds of the whole machine (all cores), to expose noise from other processes."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def _measure(
    server: ServerProcess,
    config: Config,
    work: Workload,
    concurrency: int,
    seconds: float,
    verified: int = 0,
) -> Point:
    cpu_before, busy_before = server.cpu_seconds(), _machine_busy()
    if config.generator == "wrk":
        load = wrk.run(server.base_url, work.bodies, work.target, concurrency, seconds, LOAD_CPU)
    else:
        shape = _shape(server, config, work, concurrency, verified)
        requests = h2sweep.requests_for(shape, seconds, LOAD_CPU)  # before the window
        cpu_before, busy_before = server.cpu_seconds(), _machine_busy()
        done, generator_cpu_s = shape.run(requests, LOAD_CPU)
        load = h2sweep.load_result(shape, done, generator_cpu_s)
    return Point(
        config.name,
        concurrency,
        load,
        server.cpu_seconds() - cpu_before,
        _machine_busy() - busy_before,
    )


QUIET_OTHER_CPU_PCT = report.QUIET_OTHER_CPU_PCT


def _least_disturbed(measure: Callable[[], Point], attempts: int) -> Point:
    """Measure up to ``attempts`` times, stopping at the first quiet run; keep the least disturbed.

    Other work on a shared machine only ever slows the server down (it steals its core and
    caches), so the repetition in which other processes used the least CPU is the closest to the
    server's own behaviour. On a quiet machine a point is measured once.
    """
    runs = []
    for _ in range(max(attempts, 1)):
        runs.append(measure())
        if runs[-1].other_cpu_pct <= QUIET_OTHER_CPU_PCT:
            break
    return min(runs, key=lambda p: p.other_cpu_pct)


def _warm_up(server: ServerProcess, config: Config, work: Workload, verified: int = 0) -> None:
    """``WARM_UP_S`` at c=8, not recorded (h2load: about half)."""
    if config.generator == "wrk":
        wrk.run(server.base_url, work.bodies, work.target, 8, WARM_UP_S, LOAD_CPU)
    else:
        h2sweep.measure(_shape(server, config, work, 8, verified), WARM_UP_S / 2, LOAD_CPU)


def _point(
    server: ServerProcess, config: Config, work: Workload, concurrency: int, seconds: float,
    repeat: int, verified: int = 0,
) -> Point:  # fmt: skip
    """One measured point, re-run while other processes disturb it (``_least_disturbed``)."""
    return _least_disturbed(
        functools.partial(_measure, server, config, work, concurrency, seconds, verified), repeat
    )


def _paired_window(
    a: ServerProcess,
    b: ServerProcess,
    names: tuple[str, str],
    concurrency: int,
    load: Callable[[], tuple[wrk.LoadResult, wrk.LoadResult]],
) -> tuple[Point, Point]:
    """One A/B window: ``load`` drives both servers (each result with its share of the load
    generator's CPU); each point gets its server's CPU over the window, and both the same
    shared noise (the machine's busy CPU that is neither server nor generator)."""
    cpu_before = (a.cpu_seconds(), b.cpu_seconds())
    busy_before = _machine_busy()
    loads = load()
    servers = (a.cpu_seconds() - cpu_before[0], b.cpu_seconds() - cpu_before[1])
    other = _machine_busy() - busy_before - sum(servers) - sum(x.generator_cpu_s for x in loads)
    points = [
        Point(name, concurrency, result, server_cpu, other + server_cpu + result.generator_cpu_s)
        for name, result, server_cpu in zip(names, loads, servers, strict=True)
    ]
    return points[0], points[1]


def _measure_together(
    a: ServerProcess,
    b: ServerProcess,
    names: tuple[str, str],
    works: tuple[Workload, Workload],
    concurrency: int,
    seconds: float,
) -> tuple[Point, Point]:
    """Load both servers AT ONCE for one window: two wrk processes on the load core.

    Whatever slows the machine down in this window slows both servers alike, so their ratio
    keeps only the difference between them. The two wrk runs' CPU is measured together and
    split evenly (``wrk.run`` reads it from RUSAGE_CHILDREN, which two concurrent runs share).
    """

    def load() -> tuple[wrk.LoadResult, wrk.LoadResult]:
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        with ThreadPoolExecutor(2) as pool:
            runs = [
                pool.submit(wrk.run, server.base_url, work.bodies, work.target, concurrency,
                            seconds, LOAD_CPU)
                for server, work in zip((a, b), works, strict=True)
            ]  # fmt: skip
            loads = [run.result() for run in runs]
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        generators = (children_after.ru_utime - children_before.ru_utime) + (
            children_after.ru_stime - children_before.ru_stime
        )
        first, second = (dataclasses.replace(x, generator_cpu_s=generators / 2) for x in loads)
        return first, second

    return _paired_window(a, b, names, concurrency, load)


def _measure_interleaved(
    a: ServerProcess,
    b: ServerProcess,
    names: tuple[str, str],
    works: tuple[Workload, Workload],
    seconds: float,
) -> tuple[Point, Point]:
    """One window of requests alternated between A and B by one client (benchmarks/interleaved.py).

    For latency at c=1: windows in turn drift apart (this VM's speed changes over seconds), and
    loaded together each server's request would wait for the other's on the shared core. Both
    works must post the same bodies; their targets (e.g. headers) may differ."""
    if works[0].bodies != works[1].bodies:
        raise ValueError("interleaved windows post the same bodies to both servers")
    targets = (works[0].target, works[1].target)
    return _paired_window(
        a, b, names, 1,
        lambda: interleaved.run((a.port, b.port), works[0].bodies, targets, seconds, LOAD_CPU),
    )  # fmt: skip


def paired_rounds(
    servers: tuple[ServerProcess, ServerProcess],
    names: tuple[str, str],
    works: tuple[Workload, Workload],
    concurrency: int,
    rounds: int,
    seconds: float,
    together: bool,
    label: str,
) -> list[ab.Round]:
    """``rounds`` windows of A against B (``together``: loaded at once; else c=1, interleaved)."""
    a, b = servers
    if not together and concurrency != 1:
        raise ValueError("windows not loaded together are interleaved, at c=1 only")
    found = []
    for index in range(rounds):
        if together:
            base, variant = _measure_together(a, b, names, works, concurrency, seconds)
        else:
            base, variant = _measure_interleaved(a, b, names, works, seconds)
        found.append(ab.Round(index, base, variant))
        r = found[-1]
        print(
            f"  {label} c={concurrency} window {index + 1}: {r.base.load.rps:.0f} / "
            f"{r.variant.load.rps:.0f} rps, p50 {r.base.load.p50_ms:.3f} / "
            f"{r.variant.load.p50_ms:.3f} ms, CPU/request {r.cpu_cost:+.1%}",
            flush=True,
        )
    return found


def observability_ab(
    args: argparse.Namespace, endpoint: str, json_work: Workload, work: Path
) -> list[ab.Round]:
    """The tracing + metrics cost from windows in which both servers are loaded at once (ab.py)."""
    with (
        _server(BATCHED, args, endpoint, work / "server-off.log") as off,
        _server(OBSERVED, args, endpoint, work / "server-on.log") as on,
    ):
        for server in (off, on):
            _warm_up(server, BATCHED, json_work)
        return paired_rounds(
            (off, on), (BATCHED.name, OBSERVED.name), (json_work, json_work), AB_CONCURRENCY,
            args.ab_rounds, args.ab_seconds, together=True, label="tracing+metrics A/B",
        )  # fmt: skip


def keys_ab(
    args: argparse.Namespace, endpoint: str, json_work: Workload, work: Path
) -> dict[int, list[ab.Round]]:
    """Keys off (BATCHED) against keys on (KEYS_ON, the client sending its key), per
    concurrency: c=1 interleaved (latency), c=32 loaded together (cost)."""
    keys_file = work / "keys.toml"
    keys_file.write_text(KEYS_FILE)
    keyed = dataclasses.replace(
        json_work,
        target=dataclasses.replace(json_work.target, headers=(("Authorization", f"Bearer {KEY}"),)),
    )
    config = dataclasses.replace(KEYS_ON, env={**KEYS_ON.env, "SERVING_KEYS_FILE": str(keys_file)})
    found: dict[int, list[ab.Round]] = {}
    with (
        _server(BATCHED, args, endpoint, work / "server-keys-off.log") as off,
        _server(config, args, endpoint, work / "server-keys-on.log") as on,
    ):
        _warm_up(off, BATCHED, json_work)
        _warm_up(on, config, keyed)
        for concurrency in (1, AB_CONCURRENCY):
            found[concurrency] = paired_rounds(
                (off, on), (BATCHED.name, config.name), (json_work, keyed), concurrency,
                args.keys_rounds, args.ab_seconds, together=concurrency > 1, label="keys A/B",
            )  # fmt: skip
    return found


def workloads(images: npt.NDArray[np.uint8], work: Path) -> dict[tuple[str, bool], Workload]:
    """Bodies and target per (protocol, binary): v1 JSON/octet-stream, v2 JSON/binary FP32,
    gRPC ModelInfer with raw FP32 contents."""
    v2_binary = [v2_binary_body(img[None]) for img in images]
    (header_length,) = {length for _, length in v2_binary}  # one digit: one header length
    json_bodies = [json_body(img[None]) for img in images]
    raw_bodies = [binary_body(img[None]) for img in images]
    v2_json = [v2_json_body(img[None]) for img in images]
    grpc = h2sweep.infer_request(images[0][None]).SerializeToString()
    return {
        ("v1", False): Workload(
            wrk.write_bodies(json_bodies, work / "json.bodies"),
            wrk.Target("application/json"), json_bodies[0],
        ),
        ("v1", True): Workload(
            wrk.write_bodies(raw_bodies, work / "binary.bodies"),
            wrk.Target("application/octet-stream"), raw_bodies[0],
        ),
        ("v2", False): Workload(
            wrk.write_bodies(v2_json, work / "v2.json"),
            wrk.Target("application/json", INFER_PATH), v2_json[0],
        ),
        ("v2", True): Workload(
            wrk.write_bodies([body for body, _ in v2_binary], work / "v2.binary"),
            wrk.Target("application/octet-stream", INFER_PATH, header_length), v2_binary[0][0],
        ),
        ("grpc", True): Workload(work / "unused", wrk.Target("application/grpc"), grpc),
    }  # fmt: skip


def run_costs(args: argparse.Namespace, work: Path) -> str:
    """The cost table (benchmarks/costs.py), on the server core while nothing else runs; its
    markdown, or a line saying why there is none."""
    rows = work / "costs.json"
    command = [sys.executable, "-m", "benchmarks.costs", "--models", str(args.models),
               "--model-name", args.model_name, "--no-write", "--json", str(rows)]  # fmt: skip
    if args.mnist_dir:
        command += ["--mnist-dir", args.mnist_dir]
    if args.quick:
        command += ["--repeat", "7"]
    done = subprocess.run(pinned(command, SERVER_CPU), capture_output=True, text=True, check=False)
    if done.returncode != 0 or not rows.exists():
        print(done.stdout[-2000:], done.stderr[-2000:], file=sys.stderr)
        return f"## Cost table\n\nbenchmarks.costs failed (exit {done.returncode}).\n"
    text: str = json.loads(rows.read_text())["markdown"]
    print(text, flush=True)
    return text


def _print_point(point: Point) -> None:
    load = point.load
    print(
        f"  {point.config:<48} c={point.concurrency:<3} rps={load.rps:8.0f} "
        f"p50={load.p50_ms:.3f} p95={load.p95_ms:.3f} p99={load.p99_ms:.3f} ms "
        f"cpu/req={point.cpu_us_per_request:.0f} µs errors={load.errors} "
        f"(server {point.server_cpu_pct:.0f}% / generator {point.generator_cpu_pct:.0f}% "
        f"/ other {point.other_cpu_pct:.0f}%)",
        flush=True,
    )


def sweep(
    args: argparse.Namespace, endpoint: str, works: dict[tuple[str, bool], Workload],
    concurrencies: tuple[int, ...], seconds: float, work: Path,
) -> list[Point]:  # fmt: skip
    """Every configuration of CONFIGS (``--only``) at its concurrencies, one server each."""
    points: list[Point] = []
    quick = set(concurrencies)
    for config in [c for c in CONFIGS if args.only in c.name]:
        wanted = config.concurrencies or concurrencies
        if args.quick:
            wanted = tuple(c for c in wanted if c in quick) or wanted[:1]
        workload = works[config.protocol, config.binary or config.protocol == "grpc"]
        with _server(config, args, endpoint, work / "server.log") as server:
            verified = 0
            if config.protocol == "grpc":
                # A real client first: h2load cannot read grpc-status (h2sweep.py).
                port = server.env["SERVING_GRPC_PORT"]
                checked = h2sweep.verify(f"127.0.0.1:{port}", workload.body)
                verified = checked.response_frame_bytes
                print(f"  {config.name}: grpcio call OK (label {checked.labels}, response "
                      f"frame {verified} bytes)", flush=True)  # fmt: skip
            _warm_up(server, config, workload, verified)
            for concurrency in wanted:
                point = _point(
                    server, config, workload, concurrency, seconds, args.repeat, verified
                )
                points.append(point)
                _print_point(point)
    return points


def _raw(point: Point) -> dict[str, object]:
    return {**dataclasses.asdict(point), "load": dataclasses.asdict(point.load)}


def _raw_rounds(rounds: list[ab.Round]) -> list[dict[str, object]]:
    return [{"round": r.index, "a": _raw(r.base), "b": _raw(r.variant)} for r in rounds]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--model-name", default="mnist")
    parser.add_argument("--quick", action="store_true", help="~2 minutes: c=1 and c=32, 3 s each")
    parser.add_argument("--seconds", type=float, help="per measured point (default 5, quick 3)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--mnist-dir", default=None)
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="at most this many runs per point while other processes disturb it (see header)",
    )
    parser.add_argument("--only", default="", help="run configurations whose name has this text")
    parser.add_argument(
        "--ab-rounds", type=int, help="tracing+metrics A/B windows (default 20, quick 3)"
    )
    parser.add_argument("--ab-seconds", type=int, default=3, help="per A/B window (whole s)")
    parser.add_argument(
        "--keys-rounds", type=int, help="keys on/off windows per concurrency (default 8, quick 2)"
    )
    parser.add_argument("--no-costs", action="store_true", help="skip the cost table")
    args = parser.parse_args()

    if not wrk.available():
        print("wrk not found: apt-get install wrk (docs/performance.md)", file=sys.stderr)
        return 2
    if not h2load.available():
        print("h2load not found: apt-get install nghttp2-client", file=sys.stderr)
        return 2
    version = resolve(args.models, args.model_name)
    seconds = args.seconds or (3.0 if args.quick else 5.0)
    concurrencies = (1, 32) if args.quick else (1, 8, 32, 64)
    if args.ab_rounds is None:
        args.ab_rounds = 3 if args.quick else 20
    if args.keys_rounds is None:
        args.keys_rounds = 2 if args.quick else 8
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    args.out.mkdir(parents=True, exist_ok=True)

    costs = "" if args.no_costs else run_costs(args, work)
    images, _labels = load_digits(mnist_dir(args.mnist_dir), 500)
    print(f"floor: onnxruntime in-process, model {version.path}", flush=True)
    floor_points = []
    for variant in ("fp32", "int8"):
        floor_points += floor.measure(
            variant,
            version.model_file(variant),
            images.reshape(len(images), -1),
            (1, 8, 32, 128),
            0.3 if args.quick else 1.0,
        )
    for f in floor_points:
        print(f"  {f.variant} b{f.batch}: {f.per_sample_us:.2f} µs/sample", flush=True)

    works = workloads(images, work)
    sink_log = work / "otlp-sink.log"
    sink, endpoint, sink_desc = start_otlp_sink(sink_log)
    try:
        points = sweep(args, endpoint, works, concurrencies, seconds, work)
        rounds: list[ab.Round] = []
        if args.ab_rounds and args.only in OBSERVED.name:
            rounds = observability_ab(args, endpoint, works["v1", False], work)
        keys: dict[int, list[ab.Round]] = {}
        if args.keys_rounds and args.only in KEYS_ON.name:
            keys = keys_ab(args, endpoint, works["v1", False], work)
    finally:
        received = stop_otlp_sink(sink, sink_log)
    shutil.rmtree(work, ignore_errors=True)

    keys_summary = {c: s for c, r in keys.items() if (s := ab.summarize(r)) is not None}
    found = ratios(points, ab.summarize(rounds), keys_summary)
    stem = dt.date.today().isoformat() + ("-quick" if args.quick else "")
    plot_path = args.out / f"{stem}.png"
    plot(points, plot_path)
    cpu_model = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
         if ln.startswith("model name")), platform.processor())  # fmt: skip
    load = os.getloadavg()
    header = "\n".join([
        f"# Benchmark {stem}",
        "",
        f"- Command: `python -m benchmarks {shlex.join(sys.argv[1:])}`; {seconds:g} s per point "
        f"after a 2 s warm-up per configuration; a point disturbed by other processes (other CPU > "
        f"{QUIET_OTHER_CPU_PCT:g} %) is re-run, up to {args.repeat} runs, and the least disturbed "
        f"run is kept; total {time.monotonic() - started:.0f} s; load average at the end "
        f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1 / 5 / 15 min).",
        f"- Machine: {os.cpu_count()} cores, {cpu_model}; Python {platform.python_version()}.",
        f"- Model: {version.path} (one MNIST test digit per request; wrk cycles 500 digits, "
        "h2load posts the first one).",
        "- Server pinned to core 0 (taskset), the load generator pinned to core 1: wrk 4.1 (1 "
        "thread, c connections) for HTTP, h2load (c connections, one request in flight each "
        "unless the row says otherwise) for gRPC over h2c and the '(h2load)' rows; loopback. "
        "Server CPU = utime+stime of the server process (and its workers) over the measured "
        "window; 'other CPU %' = the rest of the machine's busy CPU in that window (other "
        "processes: noise; 200 % = both cores).",
        "- 'batched' = the service's default batching settings; 'unbatched' = "
        "SERVING_MAX_BATCH_SIZE=1. Tracing and metrics are off except in the '+ tracing + "
        f"metrics' rows (default sample ratio), which export to {sink_desc}; it received "
        f"{received.get('spans', 0)} spans in {received.get('requests', 0)} exports "
        f"({received.get('errors', 0)} malformed).",
        "- Ceilings: the hello-world Litestar app and the transport ceiling (a bare ASGI "
        "callable on uvicorn with the service's protocol class, no Litestar) both msgspec-"
        "decode the same body and answer a constant; with 2 workers both run under the "
        "service's supervisor (one SO_REUSEPORT socket per worker, as the service). The "
        "service's predictions no longer go through Litestar's handler layers, so the "
        "hello-world ceiling is no longer a strict upper bound: the targets are judged "
        "against it as issue 24 states them, and the transport ceiling is shown beside.",
    ])  # fmt: skip
    text = markdown(points, floor_points, found, header, plot_path.name, costs)
    if rounds:
        text += "\n" + "\n".join(ab.markdown(
            rounds,
            f"Tracing + metrics cost, A/B loaded together (c={AB_CONCURRENCY} each, "
            f"{args.ab_seconds:g} s windows, both servers on core 0, two wrk on core 1)",
        ))  # fmt: skip
    for concurrency, key_rounds in keys.items():
        how = ("loaded together, both servers on core 0, two wrk on core 1" if concurrency > 1
               else "requests interleaved by one client (benchmarks/interleaved.py), both "
                    "servers on core 0, the client on core 1")  # fmt: skip
        text += "\n" + "\n".join(ab.markdown(
            key_rounds,
            f"Keys on / off (issue 25), c={concurrency}, {args.ab_seconds:g} s windows, {how}",
            labels=("keys off", "keys on"),
        ))  # fmt: skip
    results = args.out / f"{stem}.md"
    results.write_text(text)
    raw = {
        "floor": [dataclasses.asdict(f) for f in floor_points],
        "points": [_raw(p) for p in points],
        "ab": _raw_rounds(rounds),
        "keys": {str(c): _raw_rounds(r) for c, r in keys.items()},
        "targets": [dataclasses.asdict(r) for r in found],
    }
    (args.out / f"{stem}.json").write_text(json.dumps(raw, indent=1))
    print(f"\nwrote {results}, {plot_path} and the raw points ({stem}.json)")
    print("\n".join(r.line() for r in found))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
