"""The Open Inference Protocol's error shape, ``{"error": "<message>"}``, for ``/v2`` paths.

OIP clients (tritonclient among them) read ``error`` as a string; the v1 object shape breaks
them. The app's exception handlers stay the one place errors are mapped and call
:func:`oip_error` for v2 paths, so routing errors (404, 405) and body-size errors (413) raised
before any v2 handler runs get the OIP shape too. OIP has no 422 or 415: both become 400.
"""

from __future__ import annotations

import msgspec

PREFIX = "/v2"
_STATUS = {422: 400, 415: 400}
_encoder = msgspec.json.Encoder()


class OipError(msgspec.Struct):
    error: str


def is_v2_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def oip_error(status: int, message: str) -> tuple[int, bytes]:
    """The status and body an OIP client gets for a v1-style ``(status, message)``."""
    return _STATUS.get(status, status), _encoder.encode(OipError(message))
