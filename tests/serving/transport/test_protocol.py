"""Connection limits on a real server: huge headers, slow headers, stalled bodies, idle and too
many connections are each answered (431 / 408 / 503 with the JSON error body) and closed."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerStarter
from tests.support.server import RunningServer

pytestmark = [pytest.mark.e2e]


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


@pytest.fixture
def server(serving_server: ServerStarter, tiny_model_repository: Path) -> Iterator[RunningServer]:
    env = {
        "SERVING_MODEL_REPOSITORY": str(tiny_model_repository),
        "SERVING_HEADER_TIMEOUT_S": "0.5",
        "SERVING_BODY_TIMEOUT_S": "0.5",
        "SERVING_KEEP_ALIVE_TIMEOUT_S": "1",
        "SERVING_MAX_CONNECTIONS": "8",
    }
    with serving_server(env) as running:
        yield running


def test_headers_beyond_16_kib_are_431_and_closed(server: RunningServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1024 * 1024))
        started = time.monotonic()
        status, error = status_and_error(read_until_closed(sock))
    assert status == 431
    assert "16384" in str(error["message"])
    assert time.monotonic() - started < 2  # refused while arriving, not after a megabyte
    with httpx.Client(base_url=server.base_url) as http:  # the server is fine
        assert http.get("/healthz", headers={"x-ok": "a" * 8000}).status_code == 200


def test_slow_headers_and_silent_connections_get_408_and_close(server: RunningServer) -> None:
    with connect(server) as silent, connect(server) as slow:
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # ...and never the blank line
        started = time.monotonic()
        for sock in (silent, slow):
            status, error = status_and_error(read_until_closed(sock))
            assert status == 408
            assert "headers" in str(error["message"])
    assert 0.4 < time.monotonic() - started < 3


def test_a_stalled_upload_is_408_and_closed(server: RunningServer) -> None:
    with connect(server) as sock:
        sock.sendall(
            b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 4000000\r\n\r\n" + b"\x00" * 10
        )
        started = time.monotonic()
        raw = read_until_closed(sock)
    # 4,000,000 bytes of JSON fit max_body_bytes (4 MiB) and, as about 212 rows at least, the
    # queue: the request is admitted and its body never completes.
    status, error = status_and_error(raw)
    assert status == 408
    assert "body" in str(error["message"])
    assert time.monotonic() - started < 3


def test_idle_keep_alive_connections_are_closed(server: RunningServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.1)
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        assert read_until_closed(sock) == b""  # closed by the server, no request in between
    assert 0.8 < time.monotonic() - started < 3


def test_connections_beyond_the_limit_are_refused_at_once(server: RunningServer) -> None:
    held = [connect(server) for _ in range(8)]
    try:
        time.sleep(0.1)
        with connect(server) as extra:
            started = time.monotonic()
            status, _ = status_and_error(read_until_closed(extra))
            assert status == 503
            assert time.monotonic() - started < 0.4  # before any header timeout
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.1)
    with httpx.Client(base_url=server.base_url) as http:
        assert http.get("/healthz").status_code == 200


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
