"""h2load (Debian ``nghttp2-client``) drives the overload benchmark: a C++ generator that keeps a
schedule of three times the service's capacity on one core, which the Python one could not
(a 5 s schedule took it 25 s), and logs every request's status and latency.

Two shapes of load:

* ``new_connections``: ``-r`` opens a fixed number of connections per 10 ms, each sending one
  request, whatever the server does: open loop, as independent clients arrive.
* ``keep_alive``: ``clients`` connections, each sending at ``rate / clients`` requests/s
  (``--rps``). An HTTP/1.1 connection has one request in flight, so a client falls behind
  when a response takes longer than its interval: the report compares the offered rate with
  the schedule, and picks enough clients that a fast answer keeps it.

Every run is bounded by a request count (``-n``), never by ``-D``: h2load 1.52 sometimes aborts
on a libev assertion when a duration ends with connections open, before printing its summary.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from benchmarks.openloop import Outcome
from serving.testing import pinned

#: A request with no activity on its connection for this long is lost (the client's timeout).
TIMEOUT_S = 5
PERIOD_MS = 10


@dataclass(frozen=True, slots=True)
class Run:
    """What one h2load run asked for and got: one outcome per request that got a status."""

    scheduled: int
    #: Requests h2load started (sent or tried to connect for).
    started: int
    #: Started requests that got no response within the client's timeout.
    timeouts: int
    #: Started requests whose connection failed otherwise (refused, reset).
    errors: int
    outcomes: list[Outcome]
    elapsed_s: float
    #: h2load's own measured time ("finished in"): the load alone, without process start-up.
    measured_s: float = 0.0
    #: Bytes of response bodies received (HTTP/2 DATA frames' payload).
    data_bytes: int = 0


def available() -> bool:
    return shutil.which("h2load") is not None


def new_connections(
    url: str, body: bytes, rate: float, seconds: float, headers: Mapping[str, str], cpu: int | None
) -> Run:
    """``rate`` new connections (one request each) per second, for ``seconds``."""
    per_period = max(1, round(rate * PERIOD_MS / 1000))
    total = int(per_period * seconds * 1000 / PERIOD_MS)
    args = ["-r", str(per_period), "--rate-period", f"{PERIOD_MS}ms", "-c", str(total)]
    args += ["-n", str(total), "-H", "connection: close"]
    return _run(url, body, args, headers, cpu, total)


def keep_alive(
    url: str,
    body: bytes,
    rate: float,
    seconds: float,
    headers: Mapping[str, str],
    cpu: int | None,
    clients: int,
) -> Run:
    """``clients`` keep-alive connections sending ``rate`` requests/s together, for ``seconds``."""
    per_client = max(1, round(rate / clients))
    total = int(per_client * clients * seconds)
    return _run(url, body, ["-c", str(clients), "--rps", str(per_client), "-n", str(total)],
                headers, cpu, total)  # fmt: skip


def closed_loop(
    url: str,
    body: bytes,
    clients: int,
    requests: int,
    headers: Mapping[str, str],
    cpu: int | None,
    new_connections: bool = False,
) -> Run:
    """``requests`` requests from ``clients`` clients, each sending its next one when answered;
    each on a new connection if ``new_connections``."""
    args = ["-c", str(clients), "-n", str(requests)]
    if new_connections:
        args += ["-H", "connection: close"]
    return _run(url, body, args, headers, cpu, requests)


def _run(
    url: str,
    body: bytes,
    args: list[str],
    headers: Mapping[str, str],
    cpu: int | None,
    scheduled: int,
    h1: bool = True,
) -> Run:
    """One h2load run; ``h1``: HTTP/1.1 (else HTTP/2 with prior knowledge, h2c, as gRPC)."""
    with tempfile.TemporaryDirectory() as tmp:
        data, log = Path(tmp) / "body", Path(tmp) / "log.tsv"
        data.write_bytes(body)
        command = ["h2load", *(["--h1"] if h1 else []), "-d", str(data), "--log-file", str(log)]
        command += ["-N", f"{TIMEOUT_S}s", *args, url]
        for name, value in headers.items():
            command += ["-H", f"{name}: {value}"]
        began = time.monotonic()
        done = subprocess.run(pinned(command, cpu), check=True, capture_output=True, text=True)
        elapsed = time.monotonic() - began
        outcomes = [_outcome(line) for line in log.read_text().splitlines() if line.strip()]
    counts = _summary(done.stdout)
    answered = [o for o in outcomes if o.status > 0]
    return Run(
        scheduled=max(scheduled, counts["started"]),
        started=counts["started"],
        timeouts=counts["timeout"],
        errors=counts["errored"] - counts["timeout"],
        outcomes=answered,
        elapsed_s=elapsed,
        measured_s=_finished_s(done.stdout),
        data_bytes=_traffic(done.stdout).get("data", 0),
    )


#: What a gRPC call over HTTP/2 carries besides its message (the gRPC wire format).
GRPC_HEADERS = {"content-type": "application/grpc", "te": "trailers"}


def grpc_frame(message: bytes) -> bytes:
    """One gRPC length-prefixed message: 0 (not compressed), 4-byte big-endian length, bytes."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def grpc_closed_loop(
    url: str,
    message: bytes,
    clients: int,
    requests: int,
    cpu: int | None,
    streams: int = 1,
    headers: Mapping[str, str] | None = None,
) -> Run:
    """``requests`` unary gRPC calls of the serialized ``message`` to ``url`` (``http://host:
    port/<package.Service>/<Method>``) over h2c: ``clients`` connections with ``streams`` calls
    in flight on each, each sending its next call when one is answered.

    h2load sees HTTP: a gRPC call answers HTTP 200 whatever its grpc-status (which travels in
    the trailers), so a failed call still counts as a 200 here. The caller checks the calls
    succeeded from ``Run.data_bytes``: a failed call is trailers-only (no DATA), a successful
    one carries its response message, whose size the caller knows (:func:`grpc_failures`)."""
    args = ["-c", str(clients), "-m", str(streams), "-n", str(requests)]
    return _run(url, grpc_frame(message), args, {**GRPC_HEADERS, **(headers or {})}, cpu,
                requests, h1=False)  # fmt: skip


def grpc_failures(run: Run, response_frame_bytes: int) -> int:
    """Calls of ``run`` that got no response message, when every successful response's frame
    is ``response_frame_bytes`` long (a fixed-size answer, e.g. one digit's prediction)."""
    answered = len(run.outcomes)
    return max(0, answered - run.data_bytes // response_frame_bytes) if answered else 0


def _summary(stdout: str) -> dict[str, int]:
    """The counts of h2load's ``requests:`` line (total, started, done, succeeded, failed,
    errored, timeout)."""
    line = next(x for x in stdout.splitlines() if x.startswith("requests:"))
    return {m.group(2): int(m.group(1)) for m in re.finditer(r"(\d+) (\w+)", line)}


def _finished_s(stdout: str) -> float:
    """Seconds of h2load's ``finished in 1.14s, ...`` (or ``ms``) line; 0 when absent."""
    found = re.search(r"finished in ([\d.]+)(ms|s),", stdout)
    if found is None:
        return 0.0
    value = float(found.group(1))
    return value / 1000 if found.group(2) == "ms" else value


def _traffic(stdout: str) -> dict[str, int]:
    """The byte counts of h2load's ``traffic:`` line: total, headers, data."""
    line = next((x for x in stdout.splitlines() if x.startswith("traffic:")), "")
    return {
        m.group(2): int(m.group(1)) for m in re.finditer(r"\((\d+)\) (total|headers|data)", line)
    }


def _outcome(line: str) -> Outcome:
    """One row of h2load's ``--log-file``: start (µs since epoch), status (-1: failed), µs."""
    _, status, micros = line.split("\t")[:3]
    return Outcome(max(int(status), 0), int(micros) / 1e6)
