"""``python -m benchmarks.otlp_sink --port 4318``: a quiet OTLP/HTTP trace receiver for benchmarks.

It decodes every ``POST /v1/traces`` (protobuf, gzip or not) as an ``ExportTraceServiceRequest``,
counts requests and spans, and answers as a collector does; on SIGTERM it prints the totals as
one JSON line. oteltest's ``otelsink`` (used by the end-to-end tests) prints every span it
receives: on the load generator's core that printing starved ``wrk`` during each export (every
5 s), which lowered the offered load and showed up as a cost of tracing in the service.
"""

from __future__ import annotations

import argparse
import gzip
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

_totals = {"requests": 0, "spans": 0, "bytes": 0, "errors": 0}
_lock = threading.Lock()
_RESPONSE = ExportTraceServiceResponse().SerializeToString()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the exporter's session expects

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            request = ExportTraceServiceRequest.FromString(body)
        except Exception:  # a malformed export: count it, answer 400 like a collector
            with _lock:
                _totals["errors"] += 1
            self._reply(400, b"")
            return
        spans = sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
        with _lock:
            _totals["requests"] += 1
            _totals["spans"] += spans
            _totals["bytes"] += len(body)
        self._reply(200, _RESPONSE)

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # requests are not logged
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--port", type=int, default=4318)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    print(f"listening on 127.0.0.1:{args.port}", flush=True)
    server.serve_forever()
    with _lock:
        print("OTLPSINK " + json.dumps(_totals), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
