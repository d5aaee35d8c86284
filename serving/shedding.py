"""Admission at the protocol layer: refuse an overloaded prediction from its headers, before an
ASGI task, a route or a body read is spent on it.

A refusal written here costs the HTTP parse and a few dictionary lookups; the same refusal from
the predict handler also pays for the request task, routing, the exception handlers and the
response hooks. Only the overload answers (``queue_full``, ``overloaded``: 503 with
``Retry-After``, connection kept) are given here; anything else (not ready, draining, a bad
header) goes on to the app, which answers it as before. Admitted requests run normally, and the
handler's own ``admit`` call sees the same state. These 503s are counted in the rejection
metric by reason, not in the HTTP request metrics (they never reach the app).
"""

from __future__ import annotations

import math
import time

import msgspec

from serving.admission import OverloadedError, admit, expected_rows
from serving.api.request_id import request_id_of
from serving.api.schemas import ErrorBody, ErrorDetail
from serving.lifecycle import Service
from serving.protocol import Shedder, http_response

_CONTENT_TYPE = b"content-type"
_CONTENT_LENGTH = b"content-length"
_TIMEOUT = b"x-request-timeout-ms"
_encoder = msgspec.json.Encoder()


def shed_at_arrival(service: Service, paths: frozenset[bytes]) -> Shedder:
    """A shedder for POSTs to ``paths`` (e.g. ``/v1/predict``), deciding with ``admit``."""
    settings = service.settings
    default_timeout_s = settings.request_timeout_ms / 1000.0
    max_timeout_s = settings.max_request_timeout_ms / 1000.0

    def shed(method: bytes, url: bytes, headers: list[tuple[bytes, bytes]]) -> bytes | None:
        if method != b"POST" or url.partition(b"?")[0] not in paths or not service.ready:
            return None
        content_type, length, timeout_s = b"", None, default_timeout_s
        for name, value in headers:
            if name == _CONTENT_TYPE:
                content_type = value
            elif name == _CONTENT_LENGTH:
                length = value
            elif name == _TIMEOUT:
                try:
                    timeout_s = float(value) / 1000.0
                except ValueError:
                    return None  # the handler answers 400
                if not math.isfinite(timeout_s) or timeout_s <= 0:
                    return None
                timeout_s = min(timeout_s, max_timeout_s)
        now = time.monotonic()
        try:
            admit(service, expected_rows(content_type, length), now + timeout_s, now)
        except OverloadedError as exc:
            return refusal(exc, request_id_of({"headers": headers}))  # type: ignore[arg-type]
        return None

    return shed


def refusal(exc: OverloadedError, request_id: str) -> bytes:
    body = _encoder.encode(ErrorBody(ErrorDetail(503, str(exc), request_id)))
    headers = [
        (b"content-type", b"application/json"),
        (b"retry-after", str(exc.retry_after_s).encode()),
        (b"x-request-id", request_id.encode("latin-1")),
    ]
    return http_response(503, b"Service Unavailable", headers, body)
