"""When a request really arrived: its bytes may wait in the kernel (the accept queue, the socket's
receive buffer) long before the event loop reads them, and that wait is part of its deadline.

Linux reports, per TCP socket, the milliseconds since data last arrived (``TCP_INFO``'s
``tcpi_last_data_recv``, at the kernel's tick resolution, 1-4 ms). Read when a request's headers
are complete, it says how long they waited unread: the protocol stamps ``arrived_at`` in the
ASGI scope's extensions, and admission and the handlers count deadlines from it. Without it, a
request that waited 2 s in a full accept queue was admitted with its whole 1 s budget ahead of
it, and answered 200 after 3 s.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Mapping
from typing import Any

#: ``scope["extensions"][ARRIVED_AT]``: ``time.monotonic()`` when the request's bytes arrived.
ARRIVED_AT = "serving.arrived_at"
_TCP_INFO = getattr(socket, "TCP_INFO", None)
_LAST_DATA_RECV = struct.Struct("=I")  # tcpi_last_data_recv, after 8 bytes + 9 u32 fields
_OFFSET = 52
_SIZE = 104


def waited_s(sock: Any) -> float:
    """Seconds since data last arrived on ``sock`` (a socket or asyncio's TransportSocket); 0
    where the platform does not say."""
    if _TCP_INFO is None or sock is None:
        return 0.0
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _SIZE)
    except (OSError, ValueError):
        return 0.0
    if len(raw) < _OFFSET + 4:
        return 0.0
    return float(_LAST_DATA_RECV.unpack_from(raw, _OFFSET)[0]) / 1000.0


def stamp(scope: Any, arrived_at: float) -> None:
    """Record ``arrived_at`` in an ASGI scope (uvicorn's typed scope, hence ``Any``)."""
    scope.setdefault("extensions", {})[ARRIVED_AT] = arrived_at


def arrived_at(scope: Mapping[str, Any], default: float) -> float:
    """The stamped arrival, or ``default`` (no stamp: a test client, another server)."""
    extensions = scope.get("extensions")
    if not extensions:
        return default
    stamped = extensions.get(ARRIVED_AT)
    return default if stamped is None else float(stamped)
