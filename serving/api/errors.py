"""Every error leaves as ``{"error": {"status", "message", "request_id"}}`` (``/v2`` paths:
the Open Inference Protocol's ``{"error": "<message>"}``, see ``serving.api.v2.errors``).

Domain errors (decoding, readiness, batcher outcomes) and Litestar's own HTTP errors (400 from
its parsing, 404, 405, 413) go through the same handlers, so clients parse one shape.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.types import ExceptionHandlersMap

from serving.api.request_id import request_id_of
from serving.api.schemas import ErrorBody, ErrorDetail
from serving.api.v2.errors import is_v2_path, oip_error
from serving.batching import (
    BatcherError,
    DeadlineExceededError,
    DrainingError,
    InferenceError,
    QueueFullError,
)
from serving.lifecycle import NotReadyError, UnknownVersionError

logger = logging.getLogger(__name__)
AnyRequest = Request[Any, Any, Any]

#: Seconds a client should wait before retrying a 503.
RETRY_AFTER_S = "1"
_encoder = msgspec.json.Encoder()


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


class ClientDisconnectedError(ApiError):
    """The client went away before its body arrived; nothing is computed (nginx's 499)."""

    status_code = 499


_BATCHER_STATUS: dict[type[BatcherError], int] = {
    QueueFullError: 503,
    DrainingError: 503,
    DeadlineExceededError: 504,
    InferenceError: 500,
}


def error_response(
    request: AnyRequest, status: int, message: str, retry_after: str = RETRY_AFTER_S
) -> Response[bytes]:
    headers = {"Retry-After": retry_after} if status == 503 else None
    if is_v2_path(request.scope["path"]):
        status, body = oip_error(status, message)
    else:
        body = _encoder.encode(
            ErrorBody(ErrorDetail(status, message, request_id_of(request.scope)))
        )
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _api_error(request: AnyRequest, exc: Exception) -> Response[bytes]:
    assert isinstance(exc, ApiError)
    return error_response(request, exc.status_code, str(exc))


def _not_ready(request: AnyRequest, exc: Exception) -> Response[bytes]:
    return error_response(request, 503, str(exc))


def _unknown_version(request: AnyRequest, exc: Exception) -> Response[bytes]:
    return error_response(request, 404, str(exc))


def _batcher_error(request: AnyRequest, exc: Exception) -> Response[bytes]:
    status = next((code for kind, code in _BATCHER_STATUS.items() if isinstance(exc, kind)), 500)
    if status == 500:
        logger.error("request %s: %s", request_id_of(request.scope), exc)
    # An admission refusal (serving.admission.OverloadedError) says when to come back.
    retry_after = getattr(exc, "retry_after_s", RETRY_AFTER_S)
    return error_response(request, status, str(exc), str(retry_after))


def _http_error(request: AnyRequest, exc: Exception) -> Response[bytes]:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    response = error_response(request, exc.status_code, str(exc.detail))
    response.headers.update(headers)
    return response


def _unexpected(request: AnyRequest, exc: Exception) -> Response[bytes]:
    logger.exception("request %s: unhandled error", request_id_of(request.scope), exc_info=exc)
    return error_response(request, 500, "internal error; quote the request id when reporting it")


def exception_handlers() -> ExceptionHandlersMap:
    return {
        ApiError: _api_error,
        BatcherError: _batcher_error,
        NotReadyError: _not_ready,
        UnknownVersionError: _unknown_version,
        HTTPException: _http_error,
        Exception: _unexpected,
    }
