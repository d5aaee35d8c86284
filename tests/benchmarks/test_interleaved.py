"""The interleaved c=1 client: what it sends, and that it alternates and counts per side. Two
real HTTP/1.1 servers on loopback ports (the standard library's, keep-alive); no timing judged."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import httptools
import pytest

from benchmarks import interleaved, wrk


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: one connection per side, as the client expects
    seen: list[tuple[int, str, bytes, str | None]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        port = self.connection.getsockname()[1]
        self.seen.append((int(port), self.path, body, self.headers.get("Authorization")))
        status = 401 if self.headers.get("Authorization") == "Bearer wrong" else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def servers() -> Iterator[tuple[list[tuple[int, str, bytes, str | None]], tuple[int, int]]]:
    seen: list[tuple[int, str, bytes, str | None]] = []
    handler = type("Handler", (_Handler,), {"seen": seen})
    running = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) for _ in range(2)]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in running]
    for thread in threads:
        thread.start()
    try:
        yield seen, (running[0].server_address[1], running[1].server_address[1])
    finally:
        for server in running:
            server.shutdown()
            server.server_close()


def test_bodies_read_back_as_written(tmp_path: Path) -> None:
    bodies = [b"", b"a\nb", bytes(range(256)) * 3]
    assert interleaved.read_bodies(wrk.write_bodies(bodies, tmp_path / "b")) == bodies


def test_a_request_carries_the_targets_headers() -> None:
    target = wrk.Target("application/octet-stream", "/v2/models/m/infer", 42, (("X-A", "1"),))
    parsed: dict[bytes, bytes] = {}
    body: list[bytes] = []

    class Sink:
        def on_header(self, name: bytes, value: bytes) -> None:
            parsed[name.lower()] = value

        def on_body(self, data: bytes) -> None:
            body.append(data)

    parser = httptools.HttpRequestParser(Sink())
    parser.feed_data(interleaved.request_bytes(b"\x00\x01", target))
    assert parser.get_method() == b"POST"
    assert parsed == {
        b"host": b"127.0.0.1",
        b"content-type": b"application/octet-stream",
        b"content-length": b"2",
        b"inference-header-content-length": b"42",
        b"x-a": b"1",
    }
    assert body == [b"\x00\x01"]


def test_requests_alternate_between_the_servers_and_errors_count_per_side(
    servers: tuple[list[tuple[int, str, bytes, str | None]], tuple[int, int]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen, (port_a, port_b) = servers
    monkeypatch.setattr(interleaved, "WARM_UP_PAIRS", 3)
    a = interleaved.Side(port_a, [interleaved.request_bytes(b"1", wrk.Target("text/plain"))])
    wrong = wrk.Target("text/plain", headers=(("Authorization", "Bearer wrong"),))
    b = interleaved.Side(port_b, [interleaved.request_bytes(b"2", wrong)])
    found = interleaved.alternate((a, b), seconds=0.2)
    ports = [port for port, *_ in seen]
    # A then B, B then A, ...: every pair holds one request of each.
    pairs = [ports[i : i + 2] for i in range(0, len(ports) - 1, 2)]
    assert pairs[:4] == [[port_a, port_b], [port_b, port_a], [port_a, port_b], [port_b, port_a]]
    assert all(sorted(pair) == sorted([port_a, port_b]) for pair in pairs)
    assert found[0]["requests"] == found[1]["requests"] == len(seen) // 2 - 3 > 0
    assert (found[0]["errors"], found[1]["errors"]) == (0, found[1]["requests"])
    assert {(port, body, auth) for port, _, body, auth in seen} == {
        (port_a, b"1", None),
        (port_b, b"2", "Bearer wrong"),
    }
    for side in found:
        assert 0 < side["p50_ms"] <= side["p95_ms"] <= side["p99_ms"]
