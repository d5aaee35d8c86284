"""``X-Request-ID`` on every response of the Litestar routes, errors and 404s included.

A ``before_send`` hook rather than route middleware: Litestar runs route middleware only for
matched routes, while ``before_send`` sees every response the app sends. The id is the client's
(if sane) or a generated one (``serving.pipeline.head.request_id``: the pipeline's rule), kept
in the scope so error bodies and logs quote the same id.
"""

from __future__ import annotations

from typing import Any

from litestar.types import HTTPResponseStartEvent, Scope

from serving.pipeline.head import request_id

_HEADER = b"x-request-id"
_SCOPE_KEY = "request_id"


def request_id_of(scope: Scope) -> str:
    """The request's id: the sanitised client header, else a generated one (stable per scope)."""
    store: dict[str, Any] = scope  # type: ignore[assignment]
    cached = store.get(_SCOPE_KEY)
    if cached is not None:
        return str(cached)
    raw = next((value for name, value in scope.get("headers", ()) if name == _HEADER), None)
    value = store[_SCOPE_KEY] = request_id(raw)
    return value


def add_request_id(message: HTTPResponseStartEvent, scope: Scope) -> None:
    """Append the header to a response start message (called from the app's before_send)."""
    headers = list(message.get("headers", ()))
    headers.append((_HEADER, request_id_of(scope).encode("latin-1")))
    message["headers"] = headers
