"""Shedding in the protocol on a real server: an overloaded prediction is refused from its
headers while its body is still arriving, and the connection goes on serving."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import slow_serving
from tests.support.metrics import queued_rows, wait_for
from tests.support.slow_serving import entered
from tests.support.tiny_model import synthetic_images

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

#: A queue of four rows that refuses (503) once full instead of holding connections: what the
#: tests of shedding are about.
REFUSING = {
    "SERVING_MAX_BATCH_SIZE": "4",
    "SERVING_MAX_INSTANCES": "4",
    "SERVING_MAX_QUEUE_SIZE": "4",
    "SERVING_BACKPRESSURE": "false",
}


def raw_rows(count: int) -> bytes:
    return (synthetic_images(count, seed=count) * 255).astype("uint8").tobytes()


def read_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_a_full_queue_is_refused_from_its_headers_and_the_connection_stays_usable(
    tmp_path: Path, tiny_model_repository: Path
) -> None:
    """Refused by the protocol from the headers (no app code, no body decode): the answer goes
    out once the body has been read and dropped, and the connection serves its next request."""
    server, gate = slow_serving.gated_server(tiny_model_repository, tmp_path, **REFUSING)
    headers = {"content-type": "application/octet-stream"}
    results: list[int] = []

    def post(rows: int) -> None:
        with httpx.Client(base_url=server.base_url, timeout=60) as http:
            results.append(
                http.post("/v1/predict", content=raw_rows(rows), headers=headers).status_code
            )

    with server:
        gate.touch()
        computing = threading.Thread(target=post, args=(1,))
        computing.start()
        wait_until(lambda: entered(gate).exists())  # its batch is held in compute
        queued = threading.Thread(target=post, args=(4,))
        queued.start()
        wait_for(server.base_url, lambda samples: queued_rows(samples) == 4)  # the queue is full
        body = raw_rows(2)
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(
                b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream"
                b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:100]
            )
            sock.sendall(body[100:])  # the body is dropped, then the refusal goes out
            refused = read_response(sock)
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as closing:
                closing.sendall(
                    b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                    b"Content-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n"
                    % len(body)
                    + body
                )
                refused_closing = read_response(closing)
                closed = closing.recv(100)  # b"" once the server closed it
            oip = {}
            for path in (
                "/v2/models/mnist/infer",
                "/v2/models/mnist/versions/1/infer",
                "/v2/models/mnist/versions/9/infer",
                "/v2/models/other/infer",
            ):
                with socket.create_connection(("127.0.0.1", server.port), timeout=10) as v2:
                    v2.sendall(
                        b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 2\r\n\r\n{}" % path.encode()
                    )
                    oip[path] = read_response(v2)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            after = read_response(sock)
        gate.unlink()
        computing.join(timeout=30)
        queued.join(timeout=30)
    assert refused.startswith(b"HTTP/1.1 503"), refused
    assert b"retry-after: " in refused.lower()
    assert b"queue full" in refused
    assert b"connection: close" not in refused.lower()
    # Written by the protocol: no ASGI cycle ran, so uvicorn added none of its default headers.
    assert b"server: uvicorn" not in refused.lower()
    assert after.startswith(b"HTTP/1.1 200"), after
    # OIP v2 infer of the served model, any served version, is refused in the protocol too,
    # in the OIP error shape; so are an unknown version or model (404), from the headers.
    for path in ("/v2/models/mnist/infer", "/v2/models/mnist/versions/1/infer"):
        head, _, body = oip[path].partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503"), oip[path]
        assert b"retry-after: " in head.lower()
        assert b"server: uvicorn" not in head.lower()
        error = json.loads(body)["error"]
        assert isinstance(error, str)
        assert "queue full" in error
    for path in ("/v2/models/mnist/versions/9/infer", "/v2/models/other/infer"):
        assert oip[path].startswith(b"HTTP/1.1 404"), oip[path]
        assert b"server: uvicorn" not in oip[path].lower()
    # A client that asked to close gets the refusal, then the close it asked for.
    assert refused_closing.startswith(b"HTTP/1.1 503"), refused_closing
    assert b"connection: close" in refused_closing.lower()
    assert closed == b""
    assert sorted(results) == [200, 200]


def test_a_body_that_can_never_fit_gets_413_before_any_503(
    tmp_path: Path, tiny_model_repository: Path
) -> None:
    """With the queue full, a small request is shed (503 + Retry-After), but a body over
    ``max_body_bytes`` gets 413 with no Retry-After: declared (refused from its headers, before
    its body arrives) or chunked (once it passes the limit). Idle, the same holds."""
    server, gate = slow_serving.gated_server(tiny_model_repository, tmp_path, **REFUSING)
    gate.touch()
    json_headers = {"content-type": "application/json"}
    raw_headers = {"content-type": "application/octet-stream"}
    limit = 4 * 1024 * 1024
    results: list[int] = []

    def post(rows: int) -> None:
        with httpx.Client(base_url=server.base_url, timeout=60) as http:
            response = http.post("/v1/predict", content=raw_rows(rows), headers=raw_headers)
            results.append(response.status_code)

    def chunked(total: int) -> Iterator[bytes]:
        piece = b" " * (256 * 1024)
        for _ in range(total // len(piece)):
            yield piece

    def huge_declared() -> bytes:
        """Headers declaring 30 MB and only the first bytes of the body: the answer must come
        before the rest is sent."""
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(
                b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b'Content-Length: %d\r\n\r\n{"instances": [' % (30 * 1024 * 1024)
            )
            return read_response(sock)

    with server, httpx.Client(base_url=server.base_url, timeout=60) as http:
        idle_declared = huge_declared()
        idle_whole = http.post("/v1/predict", content=b" " * (30 << 20), headers=json_headers)
        idle_chunked = http.post("/v1/predict", content=chunked(limit << 1), headers=json_headers)
        computing = threading.Thread(target=post, args=(1,))
        computing.start()
        wait_until(lambda: entered(gate).exists())  # its batch is held in compute
        queued = threading.Thread(target=post, args=(4,))
        queued.start()
        wait_for(server.base_url, lambda samples: queued_rows(samples) == 4)  # the queue is full
        small = http.post("/v1/predict", content=raw_rows(1), headers=raw_headers)
        declared = huge_declared()
        big_chunked = http.post("/v1/predict", content=chunked(limit << 1), headers=json_headers)
        small_chunked = http.post("/v1/predict", content=chunked(1 << 19), headers=json_headers)
        gate.unlink()
        computing.join(timeout=30)
        queued.join(timeout=30)
    for raw in (idle_declared, declared):
        assert raw.startswith(b"HTTP/1.1 413"), raw
        assert b"retry-after" not in raw.lower()
    for response in (idle_whole, idle_chunked, big_chunked):
        assert response.status_code == 413, response.text
        assert "retry-after" not in response.headers
        assert response.json()["error"]["status"] == 413
    for response in (small, small_chunked):
        assert response.status_code == 503, response.text
        assert "retry-after" in response.headers
    assert sorted(results) == [200, 200]


def wait_until(condition: Callable[[], bool], timeout_s: float = 30) -> None:
    """Poll ``condition`` (the timeout only guards against a hang)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.005)
