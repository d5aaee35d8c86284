"""How a failed call reaches a gRPC client: one exception type carrying a status code, and the
mapping from the pipeline's outcomes (``serving.pipeline.errors.status_of``: the same table the
HTTP doors use) to codes.

| outcome | code | HTTP twin |
| --- | --- | --- |
| bad shape, datatype, tensor name, value, parameter | ``INVALID_ARGUMENT`` | 400 / 415 / 422 |
| a deadline no idle batch fits | ``DEADLINE_EXCEEDED`` | 400 (``infeasible``) |
| unknown model or version, model unloaded | ``NOT_FOUND`` | 404 |
| not ready, draining, queue full or overloaded (shed) | ``UNAVAILABLE`` + retry info | 503 |
| the deadline passed before the result was ready | ``DEADLINE_EXCEEDED`` | 504 |
| onnxruntime failed on this request | ``INTERNAL`` | 500 |
| no key, or a wrong one | ``UNAUTHENTICATED`` | 401 |
| a key without the scope, the admin API off | ``PERMISSION_DENIED`` | 403 |
| a key over its rate | ``RESOURCE_EXHAUSTED`` + retry info | 429 |

Retry info goes two ways in the trailing metadata of an ``UNAVAILABLE`` (and a
``RESOURCE_EXHAUSTED``): a ``google.rpc.Status`` holding a ``google.rpc.RetryInfo`` in
``grpc-status-details-bin`` (the rich error model that grpcio-status and other languages'
clients read), and ``grpc-retry-pushback-ms``, which gRPC's own retry policy honours when a
client configures one. The message also says the wait, for clients (tritonclient among them)
that only show the status text.
"""

from __future__ import annotations

# Module imports: mypy finds google.rpc's stubs this way only (google is a namespace package).
import google.rpc.error_details_pb2 as error_details_pb2
import google.rpc.status_pb2 as status_pb2
import grpc
from google.protobuf import any_pb2, duration_pb2

from serving.pipeline.admission import InfeasibleDeadlineError
from serving.pipeline.errors import status_of

STATUS_DETAILS_KEY = "grpc-status-details-bin"
PUSHBACK_KEY = "grpc-retry-pushback-ms"

Trailers = tuple[tuple[str, str | bytes], ...]

#: A gRPC code for each HTTP status the pipeline answers.
CODES: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    499: grpc.StatusCode.CANCELLED,
    500: grpc.StatusCode.INTERNAL,
    501: grpc.StatusCode.UNIMPLEMENTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
#: The HTTP twin of each code: the status label of the request metrics (one label for both).
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    **{code: status for status, code in CODES.items() if status not in (415, 422, 413)},
}


class StatusError(Exception):
    """A call's outcome as a gRPC status: ``code``, ``message`` (the client's ``details()``) and,
    for a refusal that should be retried later, how many seconds to wait."""

    def __init__(
        self, code: grpc.StatusCode, message: str, *, retry_after_s: int | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)

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


def refused(status: int, message: str, retry_after_s: int | None = None) -> StatusError:
    """An HTTP-status refusal (the access guard's, the pipeline's) as a gRPC status."""
    code = CODES.get(status, grpc.StatusCode.INTERNAL)
    if retry_after_s is not None:
        message = f"{message} (retry after {retry_after_s} s)"
    return StatusError(code, message, retry_after_s=retry_after_s)


def status_for(exc: Exception) -> StatusError | None:
    """The status for an exception a call can end with; None for one nobody expected (a bug:
    the caller answers ``INTERNAL`` without details)."""
    if isinstance(exc, StatusError):
        return exc
    if isinstance(exc, InfeasibleDeadlineError):  # gRPC names a deadline problem so
        return StatusError(grpc.StatusCode.DEADLINE_EXCEEDED, str(exc))
    status = status_of(exc)
    if status.code == 500 and status.message.startswith("internal error"):
        return None
    return refused(status.code, status.message, status.retry_after_s)
