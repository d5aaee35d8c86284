"""Calling the app with a hand-made ASGI scope, in the event loop of a running ``AppClient``.

For tests of what the app does with what the HTTP protocol leaves in the scope (an arrival
outcome), which no HTTP client can put there."""

from __future__ import annotations

from typing import Any

from serving.testing import AppClient

Message = dict[str, Any]


def http_scope(method: str, path: str, *headers: tuple[bytes, bytes]) -> dict[str, Any]:
    """A complete HTTP scope as uvicorn builds it (no ``extensions``: no protocol saw it)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": list(headers),
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


def call(client: AppClient, scope: dict[str, Any], body: bytes = b"") -> list[Message]:
    """Run ``client.served`` on ``scope`` with ``body`` in the client's loop; what it sent."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(dict(message))

    async def run() -> None:
        await client.served(scope, receive, send)  # type: ignore[arg-type]

    client.blocking_portal.call(run)
    return sent


def headers(start: Message) -> dict[bytes, bytes]:
    return dict(start["headers"])
