"""The one pass over a request's headers: everything any stage needs, read once.

The HTTP protocol (serving/transport/protocol.py) reads the head of every request when its
headers are complete; without it (a test client) the app reads it from the ASGI scope. Values
stay raw bytes: each stage parses only what it uses, and most requests use few of them.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable
from dataclasses import dataclass

#: Longest client ``X-Request-ID`` kept; a longer or unprintable one is replaced.
MAX_REQUEST_ID = 128
_PREFIX = os.urandom(8).hex()
_COUNTER = itertools.count(1)


@dataclass(slots=True)
class RequestHead:
    """A request's headers as the pipeline uses them (names already lower-case)."""

    content_type: bytes = b""
    #: The declared ``Content-Length``; None when absent (chunked) or not a number.
    content_length: int | None = None
    #: ``X-Request-Timeout-Ms`` as sent.
    timeout: bytes | None = None
    #: ``X-Request-ID`` as sent.
    request_id: bytes | None = None
    content_encoding: bytes | None = None
    #: OIP binary extension: where the JSON header ends.
    header_length: bytes | None = None
    authorization: bytes | None = None
    traceparent: bytes | None = None
    #: ``X-Client-ID``: keeps a client on one version during a canary (serving/rollout/).
    client_id: bytes | None = None


def read_head(headers: Iterable[tuple[bytes, bytes]]) -> RequestHead:
    """One pass over raw ``(name, value)`` pairs; the last of a repeated header wins."""
    head = RequestHead()
    for name, value in headers:
        if name == b"content-type":
            head.content_type = value
        elif name == b"content-length":
            head.content_length = int(value) if value.isdigit() else None
        elif name == b"x-request-timeout-ms":
            head.timeout = value
        elif name == b"x-request-id":
            head.request_id = value
        elif name == b"content-encoding":
            head.content_encoding = value
        elif name == b"inference-header-content-length":
            head.header_length = value
        elif name == b"authorization":
            head.authorization = value
        elif name == b"traceparent":
            head.traceparent = value
        elif name == b"x-client-id":
            head.client_id = value
    return head


def request_id(raw: bytes | None) -> str:
    """The client's id if sane (printable, 1..128 characters), else a generated one.

    Generated ids are a random per-process prefix plus a counter, 32 hex digits like a uuid4:
    unique across processes and restarts in practice, and ~10x cheaper than ``uuid4()``.
    """
    if raw:
        candidate = raw.decode("latin-1")
        if len(candidate) <= MAX_REQUEST_ID and candidate.isprintable():
            return candidate
    return f"{_PREFIX}{next(_COUNTER):016x}"
