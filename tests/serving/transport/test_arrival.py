"""A request's deadline counts from when its bytes arrived, not from when the server read them."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from serving.transport.arrival import ARRIVED_AT, arrived_at, waited_s
from tests.support import slow_serving
from tests.support.tiny_model import synthetic_images


def test_the_kernel_says_how_long_bytes_waited_unread() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
        with client, server:
            sent = time.monotonic()
            client.sendall(b"GET / HTTP/1.1\r\n\r\n")
            time.sleep(0.08)  # the wait to be measured, not a synchronisation
            waited = waited_s(server)
            elapsed = time.monotonic() - sent
    # At least the sleep (the kernel counts in ms, hence the slack), at most what really went
    # by, however long a busy machine stretched the sleep.
    assert 0.06 <= waited <= elapsed + 0.02


def test_no_socket_or_no_stamp_means_no_wait() -> None:
    assert waited_s(None) == 0.0
    assert arrived_at({"type": "http"}, 5.0) == 5.0
    assert arrived_at({"extensions": {ARRIVED_AT: 2.0}}, 5.0) == 2.0


@pytest.mark.e2e
def test_a_request_that_waited_past_its_deadline_is_refused_not_served(
    tmp_path: Path, tiny_model_repository: Path
) -> None:
    """B is pipelined behind A, whose batch takes 1.5 s: B waits unread that long. Its own batch
    will take 1.5 s too (the meter learnt it from A). Counted from when B is read, its 3 s
    deadline fits that wait (75 % of 3 s > 1.5 s) and it would be served; counted from its
    arrival, only 1.5 s are left (75 %: 1.125 s < 1.5 s), so it is refused at once."""
    server, _ = slow_serving.gated_server(  # no gate file: every batch just takes 1.5 s
        tiny_model_repository, tmp_path, SERVING_REQUEST_TIMEOUT_MS="10000", SLOW_BATCH_MS="1500"
    )
    body = (synthetic_images(1, seed=3) * 255).astype("uint8").tobytes()
    head = b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
    first = head + b"Content-Length: %d\r\n\r\n" % len(body) + body
    second = head + b"X-Request-Timeout-Ms: 3000\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    with server, socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        sock.sendall(first + second)  # pipelined: both arrive now
        data = b""
        while data.count(b"HTTP/1.1 ") < 2 or not data.endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    answers = [part for part in data.split(b"HTTP/1.1 ") if part]
    assert answers[0].startswith(b"200"), data
    assert answers[1].startswith(b"503"), data
    assert b"overloaded" in answers[1]
