"""Latency at c=1 of two servers, from one client that alternates its requests between them.

Why: windows measured in turn (wrk on A for 3 s, then on B) spread over 1.005-1.170 for a
difference of ~2 %: this VM's speed drifts over seconds. Here request i goes to A and then B,
request i+1 to B and then A, on one keep-alive connection each, so whatever slows the machine
slows both sides of every pair. Measured on 2026-12-07 with the same service on both sides
(20,000 pairs, both servers on core 0, the client on core 1): p50 ratio 0.999, and ten blocks of
2,000 pairs within 0.994-1.006.

Both servers may share a core: only one request is in flight at a time. The latency is the
client's (send to last byte, ``perf_counter_ns``); the client's own time, a few µs of Python per
request, is in both sides alike. Responses are read with httptools (uvicorn's parser); any
status but 200 is counted as an error.

``run(...)`` starts ``python -m benchmarks.interleaved <spec.json>`` pinned to the load core and
returns one :class:`~benchmarks.wrk.LoadResult` per side.
"""

from __future__ import annotations

import json
import resource
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httptools
import numpy as np

from benchmarks.wrk import LoadResult, Target
from serving.testing import pinned

#: Alternated but unrecorded pairs first: connections, caches and the servers' first requests.
WARM_UP_PAIRS = 200


@dataclass(frozen=True, slots=True)
class Side:
    """One server: its port and the requests it gets, in turn (the bodies with its target)."""

    port: int
    requests: list[bytes]


def read_bodies(path: Path) -> list[bytes]:
    """The bodies of a file written by :func:`benchmarks.wrk.write_bodies`."""
    data, bodies, at = path.read_bytes(), [], 0
    while at < len(data):
        end = data.index(b"\n", at)
        length = int(data[at:end])
        bodies.append(data[end + 1 : end + 1 + length])
        at = end + 1 + length
    return bodies


def request_bytes(body: bytes, target: Target) -> bytes:
    """One HTTP/1.1 POST of ``body`` as wrk's script sends it (the same headers)."""
    headers = [
        ("Host", "127.0.0.1"),
        ("Content-Type", target.content_type),
        ("Content-Length", str(len(body))),
    ]
    if target.header_length is not None:
        headers.append(("Inference-Header-Content-Length", str(target.header_length)))
    headers += target.headers
    head = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return f"POST {target.path} HTTP/1.1\r\n{head}\r\n".encode("latin-1") + body


class _Response:
    """httptools' callbacks for one connection's responses, one after another."""

    def __init__(self) -> None:
        self.complete = False

    def on_message_begin(self) -> None:
        self.complete = False

    def on_message_complete(self) -> None:
        self.complete = True


class _Connection:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.response = _Response()
        self.parser = httptools.HttpResponseParser(self.response)

    def exchange(self, request: bytes) -> tuple[int, int]:
        """Send ``request`` and read its whole response: (nanoseconds, status)."""
        started = time.perf_counter_ns()
        self.sock.sendall(request)
        self.response.complete = False
        while not self.response.complete:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the connection")
            self.parser.feed_data(data)
        return time.perf_counter_ns() - started, self.parser.get_status_code()


def alternate(sides: tuple[Side, Side], seconds: float) -> list[dict[str, float]]:
    """Pairs of requests (A then B, then B then A, ...) for ``seconds`` after the warm-up: per
    side its requests, seconds spent, errors and latency percentiles (ms)."""
    connections = [_Connection(side.port) for side in sides]
    latencies: tuple[list[int], list[int]] = ([], [])
    errors = [0, 0]
    spent = [0, 0]
    deadline, index = None, 0
    while deadline is None or time.perf_counter() < deadline:
        if index == WARM_UP_PAIRS:
            deadline = time.perf_counter() + seconds
        for side in (0, 1) if index % 2 == 0 else (1, 0):
            requests = sides[side].requests
            took, status = connections[side].exchange(requests[index % len(requests)])
            if index >= WARM_UP_PAIRS:
                latencies[side].append(took)
                spent[side] += took
                errors[side] += status != 200
        index += 1
    for connection in connections:
        connection.sock.close()
    found = []
    for side in (0, 1):
        p50, p95, p99 = np.percentile(np.asarray(latencies[side]) / 1e6, (50, 95, 99))
        found.append({
            "requests": len(latencies[side]), "seconds": spent[side] / 1e9,
            "errors": errors[side], "p50_ms": p50, "p95_ms": p95, "p99_ms": p99,
        })  # fmt: skip
    return found


def run(
    ports: tuple[int, int],
    bodies_file: Path,
    targets: tuple[Target, Target],
    seconds: float,
    cpu: int | None,
) -> tuple[LoadResult, LoadResult]:
    """One window of ``seconds``: A's and B's results. ``seconds`` of each result is the time its
    requests took, so ``rps`` is the rate of a server with nothing between its requests. The
    client's CPU is split evenly between the two."""
    spec = {
        "seconds": seconds,
        "bodies": str(bodies_file),
        "sides": [
            {"port": port, "target": [t.content_type, t.path, t.header_length, list(t.headers)]}
            for port, t in zip(ports, targets, strict=True)
        ],
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
        json.dump(spec, file)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        completed = subprocess.run(
            pinned([sys.executable, "-m", "benchmarks.interleaved", file.name], cpu),
            capture_output=True, text=True, timeout=seconds + 60, check=False,
        )  # fmt: skip
    finally:
        Path(file.name).unlink(missing_ok=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if completed.returncode != 0:
        raise RuntimeError(f"interleaved client failed: {completed.stderr or completed.stdout}")
    generator = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    results = [
        LoadResult(
            requests=int(side["requests"]),
            seconds=side["seconds"],
            errors=int(side["errors"]),
            p50_ms=side["p50_ms"],
            p95_ms=side["p95_ms"],
            p99_ms=side["p99_ms"],
            generator_cpu_s=generator / 2,
        )
        for side in json.loads(completed.stdout.splitlines()[-1])
    ]
    return results[0], results[1]


def main(spec_file: str) -> None:
    spec = json.loads(Path(spec_file).read_text())
    bodies = read_bodies(Path(spec["bodies"]))
    sides = []
    for side in spec["sides"]:
        content_type, path, header_length, headers = side["target"]
        pairs = tuple((str(name), str(value)) for name, value in headers)
        target = Target(content_type, path, header_length, pairs)
        sides.append(Side(side["port"], [request_bytes(body, target) for body in bodies]))
    print(json.dumps(alternate((sides[0], sides[1]), spec["seconds"])))


if __name__ == "__main__":
    main(sys.argv[1])
