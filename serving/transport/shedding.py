"""Admission at the protocol layer: refuse an overloaded prediction from its headers, before an
ASGI task, a route or a body read is spent on it.

A refusal written here costs the HTTP parse and a few dictionary lookups; the same refusal from
a handler also pays for the request task, routing, the exception handlers and the response
hooks. It covers ``POST /v1/predict`` and the OIP v2 infer paths of the served model (each
refusal in its API's error shape). Only the overload answers (``queue_full``, ``overloaded``:
503 with ``Retry-After``, connection kept) are given here; anything else (not ready, draining,
an unknown version, a bad header) goes on to the app, which answers it as before. Admitted
requests run normally, and the handler's own ``admit`` call sees the same state. These 503s are
counted in the rejection metric by reason, not in the HTTP request metrics (they never reach
the app).
"""

from __future__ import annotations

import time

import msgspec

from serving.admission import (
    OverloadedError,
    admit,
    expected_oip_rows,
    expected_rows,
    header_timeout_s,
)
from serving.api.request_id import request_id_of
from serving.api.schemas import ErrorBody, ErrorDetail
from serving.api.v2.errors import OipError
from serving.lifecycle import Service, UnknownVersionError
from serving.transport.protocol import Shedder, http_response

_CONTENT_TYPE = b"content-type"
_CONTENT_LENGTH = b"content-length"
_TIMEOUT = b"x-request-timeout-ms"
_HEADER_LENGTH = b"inference-header-content-length"
_V1_PATH = b"/v1/predict"
_INFER = b"/infer"
_VERSIONS = b"versions/"
_encoder = msgspec.json.Encoder()


def shed_at_arrival(service: Service) -> Shedder:
    """A shedder for prediction POSTs, deciding with ``admit``."""
    settings = service.settings
    default_timeout_s = settings.request_timeout_ms / 1000.0
    max_timeout_s = settings.max_request_timeout_ms / 1000.0
    v2_prefix = b"/v2/models/" + settings.model_name.encode() + b"/"

    def shed(
        method: bytes, url: bytes, headers: list[tuple[bytes, bytes]], arrived_at: float
    ) -> bytes | None:
        if method != b"POST" or not service.ready:
            return None
        path = url.partition(b"?")[0]
        version: str | None = None
        if path == _V1_PATH:
            oip = False
        elif path.startswith(v2_prefix) and path.endswith(_INFER):
            oip = True
            middle = path[len(v2_prefix) : -len(_INFER)]  # b"" or b"versions/<v>"
            if middle:
                if not middle.startswith(_VERSIONS) or b"/" in middle[len(_VERSIONS) :]:
                    return None
                version = middle[len(_VERSIONS) :].decode("latin-1")
        else:
            return None
        content_type, length, header_length, timeout = b"", None, None, None
        for name, value in headers:
            if name == _CONTENT_TYPE:
                content_type = value
            elif name == _CONTENT_LENGTH:
                length = value
            elif name == _HEADER_LENGTH:
                header_length = value
            elif name == _TIMEOUT and not oip:  # v2: parameters.timeout is in the body
                timeout = value
        try:
            timeout_s = header_timeout_s(timeout, default_timeout_s, max_timeout_s)
        except ValueError:
            return None  # the handler answers 400
        if oip:
            rows = expected_oip_rows(content_type, length, header_length)
        else:
            rows = expected_rows(content_type, length)
        try:  # the deadline counts from when the bytes arrived, not from now
            admit(service, rows, arrived_at + timeout_s, time.monotonic(), version)
        except OverloadedError as exc:
            request_id = request_id_of({"headers": headers})  # type: ignore[arg-type]
            return refusal(exc, request_id, oip)
        except UnknownVersionError:
            return None  # the handler answers 404
        return None

    return shed


def refusal(exc: OverloadedError, request_id: str, oip: bool = False) -> bytes:
    """The 503 in the API's error shape: v1's object, or OIP's ``{"error": "<message>"}``."""
    if oip:
        body = _encoder.encode(OipError(str(exc)))
    else:
        body = _encoder.encode(ErrorBody(ErrorDetail(503, str(exc), request_id)))
    headers = [
        (b"content-type", b"application/json"),
        (b"retry-after", str(exc.retry_after_s).encode()),
        (b"x-request-id", request_id.encode("latin-1")),
    ]
    return http_response(503, b"Service Unavailable", headers, body)
