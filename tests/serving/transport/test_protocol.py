"""Connection limits on a real server: huge headers, slow headers, stalled bodies, idle and too
many connections are each answered (431 / 408 / 503 with the JSON error body) and closed."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import ServerStarter
from tests.support.server import RunningServer
from tests.support.waiting import HANG_S, wait_until

pytestmark = [pytest.mark.e2e]
#: uvloop's timers count in libuv's whole milliseconds of a time cached per loop iteration: one
#: may fire a little before its delay by time.monotonic().
TICK = 0.01


def connect(server: RunningServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def status_and_error(raw: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"connection: close" in head.lower()
    error: dict[str, object] = json.loads(body)["error"]
    assert error["status"] == status
    return status, error


def started(serving_server: ServerStarter, repository: Path, **timeouts: str) -> Any:
    env = {
        "SERVING_MODEL_REPOSITORY": str(repository),
        "SERVING_MAX_CONNECTIONS": "8",
        **{f"SERVING_{name.upper()}": value for name, value in timeouts.items()},
    }
    return serving_server(env)


@pytest.fixture
def server(serving_server: ServerStarter, tiny_model_repository: Path) -> Iterator[RunningServer]:
    """Short timeouts, for the tests of the timeouts (defaults: 10 s, 30 s and 5 s)."""
    with started(
        serving_server,
        tiny_model_repository,
        header_timeout_s="0.5",
        body_timeout_s="0.5",
        keep_alive_timeout_s="1",
    ) as running:
        yield running


@pytest.fixture
def patient(serving_server: ServerStarter, tiny_model_repository: Path) -> Iterator[RunningServer]:
    """Timeouts no test reaches, for the tests of the limits: a connection the test holds open
    stays open, and an answer it gets cannot be a timeout's."""
    with started(
        serving_server,
        tiny_model_repository,
        header_timeout_s="120",
        body_timeout_s="120",
        keep_alive_timeout_s="120",
    ) as running:
        yield running


def test_headers_beyond_16_kib_are_431_and_closed(patient: RunningServer) -> None:
    with connect(patient) as sock:
        # A megabyte of one header and never the blank line: refused while the headers arrive,
        # not when they end (they never do, and no header timeout is near). Sent from a thread
        # while this one reads: the server may stop reading (and reset) once it has answered.
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1024 * 1024)
        sender = threading.Thread(target=send_ignoring_resets, args=(sock, head), daemon=True)
        sender.start()
        status, error = status_and_error(read_until_closed(sock))
        sender.join(timeout=HANG_S)
    assert status == 431
    assert "16384" in str(error["message"])
    with httpx.Client(base_url=patient.base_url) as http:  # the server is fine
        assert http.get("/healthz", headers={"x-ok": "a" * 8000}).status_code == 200


def test_a_head_over_the_limit_in_one_read_is_431_at_once(patient: RunningServer) -> None:
    """20 KiB of headers without their end, sent at once and then nothing more: one read (or a
    few) holds the whole head. Its first chunk is counted too, so the answer is 431 now, not the
    header timeout's 408 in 120 s (the test's 10 s socket timeout would fail first)."""
    with connect(patient) as sock:
        sock.settimeout(10)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (20 * 1024))
        status, _ = status_and_error(read_until_closed(sock))
    assert status == 431


def test_pipelined_requests_in_one_read_are_not_counted_as_one_head(
    patient: RunningServer,
) -> None:
    """A chunk that ends one request and starts the next is not all the next one's head: a
    12 KiB header, then a second request, sent together, are both answered."""
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * (12 * 1024) + b"\r\n\r\n"
    with connect(patient) as sock:
        sock.settimeout(10)
        sock.sendall(head + head[: 8 * 1024])  # the second head's first 8 KiB...
        first = sock.recv(65536)
        sock.sendall(head[8 * 1024 :])  # ...and the rest of it
        answers = first
        while answers.count(b"HTTP/1.1 ") < 2:
            answers += sock.recv(65536)
    assert answers.count(b"HTTP/1.1 200") == 2, answers[:300]


def send_ignoring_resets(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):
        sock.sendall(data)


def test_slow_headers_and_silent_connections_get_408_and_close(server: RunningServer) -> None:
    # Timed from before the connections open: the server's clock starts later, so the lower
    # bound (the 0.5 s timeout firing, not an earlier answer) holds however slow the machine.
    started = time.monotonic()
    with connect(server) as silent, connect(server) as slow:
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # ...and never the blank line
        for sock in (silent, slow):
            status, error = status_and_error(read_until_closed(sock))
            assert status == 408
            assert "headers" in str(error["message"])
    # Upper bound: generous for a loaded machine, yet below the 10 s default (the setting is
    # the one that fired).
    assert 0.5 - TICK <= time.monotonic() - started < 8


def test_a_stalled_upload_is_408_and_closed(server: RunningServer) -> None:
    with connect(server) as sock:
        started = time.monotonic()
        sock.sendall(
            b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 4000000\r\n\r\n" + b"\x00" * 10
        )
        raw = read_until_closed(sock)
    # 4,000,000 bytes of JSON fit max_body_bytes (4 MiB) and, as about 212 rows at least, the
    # queue: the request is admitted and its body never completes.
    status, error = status_and_error(raw)
    assert status == 408
    assert "body" in str(error["message"])
    # The 0.5 s body timeout fired (its clock starts after the headers, after ``started``);
    # generous above, far below the 30 s default.
    assert 0.5 - TICK <= time.monotonic() - started < 15


def test_idle_keep_alive_connections_are_closed(server: RunningServer) -> None:
    with connect(server) as sock:
        started = time.monotonic()  # before the request: the idle timer starts after its answer
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _ = read_response(sock, bytearray())
        assert head.startswith(b"HTTP/1.1 200")
        assert read_until_closed(sock) == b""  # closed by the server, no request in between
    # The 1 s keep-alive timeout fired; generous above, below the 5 s default.
    assert 1.0 - TICK <= time.monotonic() - started < 4.5


def server_side_ports(server: RunningServer) -> set[int]:
    """Client ports of the connections the server process has accepted."""
    connections = psutil.Process(server.process.pid).net_connections("tcp")
    return {c.raddr.port for c in connections if c.raddr and c.status == psutil.CONN_ESTABLISHED}


def test_connections_beyond_the_limit_are_refused_at_once(patient: RunningServer) -> None:
    held = [connect(patient) for _ in range(8)]
    try:
        ports = {sock.getsockname()[1] for sock in held}
        wait_until(lambda: ports <= server_side_ports(patient), what="all 8 accepted")
        with connect(patient) as extra:
            status, _ = status_and_error(read_until_closed(extra))
            # 503 for a connection that sent nothing, from a server whose timeouts no test
            # reaches: it was refused on arrival, not answered after waiting for anything.
            assert status == 503
    finally:
        for sock in held:
            sock.close()

    def healthy() -> bool:  # once the server has seen the 8 close, a new connection is served
        with httpx.Client(base_url=patient.base_url) as http:
            return http.get("/healthz").status_code == 200

    wait_until(healthy, what="a connection served after the held ones closed")


def read_response(sock: socket.socket, pending: bytearray) -> tuple[bytes, bytes]:
    """One response (head, body) off ``sock``, by its Content-Length; the rest stays pending."""
    while b"\r\n\r\n" not in pending:
        chunk = sock.recv(65536)
        assert chunk, bytes(pending)
        pending += chunk
    head, _, rest = bytes(pending).partition(b"\r\n\r\n")
    fields = [line.split(b": ", 1) for line in head.split(b"\r\n")[1:]]
    length = int(next(value for name, value in fields if name.lower() == b"content-length"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk
        rest += chunk
    pending[:] = rest[length:]
    return head, rest[:length]


def predict_request(*extra: bytes) -> bytes:
    body = bytes(784)
    lines = [
        b"POST /v1/predict HTTP/1.1",
        b"Host: x",
        b"Content-Type: application/octet-stream",
        b"Content-Length: %d" % len(body),
        *extra,
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def test_predictions_are_whole_responses_in_order_on_one_connection(
    server: RunningServer,
) -> None:
    """Predictions are written by the protocol in one write (DirectSend): the head carries
    uvicorn's date and server headers, a Content-Length that frames the body, one Connection
    header when the client closes, and pipelined requests are answered in order."""
    pending = bytearray()
    with connect(server) as sock:
        sock.sendall(
            predict_request(b"X-Request-ID: first") + predict_request(b"X-Request-ID: second")
        )
        for expected in (b"first", b"second"):
            head, body = read_response(sock, pending)
            assert head.startswith(b"HTTP/1.1 200 OK\r\n"), head
            lowered = head.lower()
            assert b"\r\ndate: " in lowered
            assert b"\r\nserver: " in lowered
            assert b"\r\nx-request-id: " + expected in lowered
            assert b"connection: close" not in lowered
            assert json.loads(body)["predictions"][0]["label"] in range(10)
        sock.sendall(predict_request(b"X-Request-ID: last", b"Connection: close"))
        head, body = read_response(sock, pending)
        assert head.lower().count(b"\r\nconnection: ") == 1
        assert b"\r\nconnection: close" in head.lower()
        assert json.loads(body)["predictions"]
        assert bytes(pending) + read_until_closed(sock) == b""  # and the server closed it
