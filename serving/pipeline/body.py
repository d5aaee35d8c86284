"""Reading a request body from ASGI ``receive``, refused with 413 past the limit."""

from __future__ import annotations

from litestar.types import Receive

from serving.pipeline.errors import ClientDisconnectedError, PayloadTooLargeError


async def read_body(receive: Receive, limit: int, declared: int | None) -> bytes:
    """The whole body; 413 when ``declared`` (Content-Length) or what arrives passes ``limit``.

    The HTTP protocol refuses a declared length over the limit before the app runs; this check
    covers a chunked body and servers without that protocol (a test client).
    """
    if declared is not None and declared > limit:
        raise PayloadTooLargeError(f"request body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect: the client is gone
            raise ClientDisconnectedError("the client went away before its body arrived")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"request body larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
