"""``X-Request-ID`` on every response, errors and 404s included.

A ``before_send`` hook rather than route middleware: Litestar runs route middleware only for
matched routes, while ``before_send`` sees every response the app sends. The id is the client's
(if sane) or a fresh ``uuid4().hex``, kept in the scope so error bodies and logs quote the same id.
"""

from __future__ import annotations

import uuid
from typing import Any

from litestar.types import Message, Scope

_HEADER = b"x-request-id"
_SCOPE_KEY = "request_id"
_MAX_LENGTH = 128


def request_id_of(scope: Scope) -> str:
    """The request's id: the sanitised client header, else a generated one (stable per scope)."""
    store: dict[str, Any] = scope  # type: ignore[assignment]
    cached = store.get(_SCOPE_KEY)
    if cached is not None:
        return str(cached)
    value = ""
    for name, raw in scope.get("headers", ()):
        if name == _HEADER:
            candidate = raw.decode("latin-1")
            if 0 < len(candidate) <= _MAX_LENGTH and candidate.isprintable():
                value = candidate
            break
    if not value:
        value = uuid.uuid4().hex
    store[_SCOPE_KEY] = value
    return value


async def add_request_id(message: Message, scope: Scope) -> None:
    """before_send hook: append the header to the response start message."""
    if message["type"] == "http.response.start":
        headers = list(message.get("headers", ()))
        headers.append((_HEADER, request_id_of(scope).encode("latin-1")))
        message["headers"] = headers
