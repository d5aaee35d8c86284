"""How a failed call reaches a gRPC client: one exception type carrying a status code, and the
mapping from the service's own exceptions to codes.

| outcome | code | HTTP twin |
| --- | --- | --- |
| bad shape, datatype, tensor name, value, parameter | ``INVALID_ARGUMENT`` | 400 |
| unknown model or version, model unloaded | ``NOT_FOUND`` | 404 |
| not ready, draining, queue full (shed) | ``UNAVAILABLE`` + retry info | 503 + Retry-After |
| the deadline passed before the result was ready | ``DEADLINE_EXCEEDED`` | 504 |
| onnxruntime failed on this request | ``INTERNAL`` | 500 |
| no or a wrong key (access.py) | ``UNAUTHENTICATED`` / ``PERMISSION_DENIED`` | 401 / 403 |

Retry info goes two ways in the trailing metadata of an ``UNAVAILABLE``: a ``google.rpc.Status``
holding a ``google.rpc.RetryInfo`` in ``grpc-status-details-bin`` (the rich error model that
grpcio-status and other languages' clients read), and ``grpc-retry-pushback-ms``, which gRPC's
own retry policy honours when a client configures one. The message also says the wait, for
clients (tritonclient among them) that only show the status text.
"""

from __future__ import annotations

# Module imports: mypy finds google.rpc's stubs this way only (google is a namespace package).
import google.rpc.error_details_pb2 as error_details_pb2
import google.rpc.status_pb2 as status_pb2
import grpc
from google.protobuf import any_pb2, duration_pb2

from serving.batching import DeadlineExceededError, DrainingError, InferenceError, QueueFullError
from serving.lifecycle import NotReadyError, UnknownVersionError

#: What a refusal without its own estimate asks the client to wait (HTTP's Retry-After: 1).
DEFAULT_RETRY_AFTER_S = 1
STATUS_DETAILS_KEY = "grpc-status-details-bin"
PUSHBACK_KEY = "grpc-retry-pushback-ms"

Trailers = tuple[tuple[str, str | bytes], ...]


class StatusError(Exception):
    """A call's outcome as a gRPC status: ``code``, ``message`` (the client's ``details()``) and,
    for ``UNAVAILABLE``, how many seconds to wait before retrying."""

    def __init__(
        self, code: grpc.StatusCode, message: str, *, retry_after_s: int | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s

    def trailers(self) -> Trailers:
        """The trailing metadata that goes with the status (retry info, if any)."""
        if self.retry_after_s is None:
            return ()
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.RetryInfo(
                retry_delay=duration_pb2.Duration(seconds=self.retry_after_s)
            )
        )
        # The status in the details must repeat the call's code and message: clients check it.
        status = status_pb2.Status(code=self.code.value[0], message=self.message, details=[detail])
        return (
            (STATUS_DETAILS_KEY, status.SerializeToString()),
            (PUSHBACK_KEY, str(self.retry_after_s * 1000)),
        )


def invalid(message: str) -> StatusError:
    return StatusError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> StatusError:
    return StatusError(grpc.StatusCode.NOT_FOUND, message)


def unavailable(message: str, retry_after_s: int = DEFAULT_RETRY_AFTER_S) -> StatusError:
    return StatusError(
        grpc.StatusCode.UNAVAILABLE,
        f"{message} (retry after {retry_after_s} s)",
        retry_after_s=retry_after_s,
    )


def status_for(exc: Exception) -> StatusError | None:
    """The status for one of the service's exceptions; None for anything else (a bug: the
    caller answers ``INTERNAL`` without details)."""
    if isinstance(exc, StatusError):
        return exc
    if isinstance(exc, UnknownVersionError):
        return not_found(str(exc))
    if isinstance(exc, NotReadyError | DrainingError):
        return unavailable(str(exc))
    if isinstance(exc, QueueFullError):  # admission's OverloadedError carries its own estimate
        return unavailable(str(exc), getattr(exc, "retry_after_s", DEFAULT_RETRY_AFTER_S))
    if isinstance(exc, DeadlineExceededError):
        return StatusError(grpc.StatusCode.DEADLINE_EXCEEDED, str(exc))
    if isinstance(exc, InferenceError):
        return StatusError(grpc.StatusCode.INTERNAL, str(exc))
    return None
