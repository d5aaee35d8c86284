"""What a request can be answered instead of a prediction, as exceptions that carry a status.

Raised by every stage of the pipeline (and by the Litestar routes that share them); each door
gives them its own shape (v1 JSON object, OIP ``{"error": "<message>"}``, later a gRPC status)
through :func:`status_of`, the one mapping from an exception to a status and a Retry-After.
"""

from __future__ import annotations

from dataclasses import dataclass

from serving.batching import (
    BatcherError,
    DeadlineExceededError,
    DrainingError,
    InferenceError,
    QueueFullError,
)
from serving.lifecycle import NotReadyError, UnknownVersionError

#: Seconds a client should wait before retrying a 503 that does not say more.
RETRY_AFTER_S = 1


class ApiError(Exception):
    """An error with an HTTP status, raised by the API layer."""

    status_code = 400


class MalformedBodyError(ApiError):
    """The body cannot be parsed (invalid JSON, unreadable PNG, bad header): 400."""

    status_code = 400


class UnsupportedMediaTypeError(ApiError):
    status_code = 415


class InvalidInputError(ApiError):
    """Well-formed but invalid instances; the message names the instance and the problem: 422.

    ``reason`` is a bounded label for the rejected-inputs counter: ``non_finite``,
    ``out_of_range``, ``wrong_size``, ``wrong_type``, ``instance_count`` or ``invalid``.
    """

    status_code = 422

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


class NotFoundError(ApiError):
    """An unknown model or model version: 404."""

    status_code = 404


class PayloadTooLargeError(ApiError):
    """A body over ``max_body_bytes``: 413, never a retry."""

    status_code = 413


class ClientDisconnectedError(ApiError):
    """The client went away before its body arrived; nothing is computed (nginx's 499)."""

    status_code = 499


@dataclass(frozen=True, slots=True)
class Status:
    """An exception as the client sees it: status, message, seconds to wait (503 only)."""

    code: int
    message: str
    retry_after_s: int | None = None


_BATCHER_STATUS: dict[type[BatcherError], int] = {
    QueueFullError: 503,
    DrainingError: 503,
    DeadlineExceededError: 504,
    InferenceError: 500,
}


def status_of(exc: BaseException) -> Status:
    """The status of any exception a request can end with (500 for what nobody expected)."""
    if isinstance(exc, ApiError):
        return Status(exc.status_code, str(exc))
    if isinstance(exc, UnknownVersionError):
        return Status(404, str(exc))
    if isinstance(exc, NotReadyError):
        return Status(503, str(exc), RETRY_AFTER_S)
    if isinstance(exc, BatcherError):
        code = next((c for kind, c in _BATCHER_STATUS.items() if isinstance(exc, kind)), 500)
        # An admission refusal (pipeline.admission.OverloadedError) says when to come back.
        retry = getattr(exc, "retry_after_s", RETRY_AFTER_S) if code == 503 else None
        return Status(code, str(exc), retry)
    return Status(500, "internal error; quote the request id when reporting it")
