"""Errors of the Litestar routes, in the same shapes as the pipeline's: ``{"error": {"status",
"message", "request_id"}}``, and OIP's ``{"error": "<message>"}`` under ``/v2``.

The pipeline answers prediction errors itself (serving/pipeline/stages.py); these handlers cover
every other route and Litestar's own HTTP errors (400 from its parsing, 404, 405, 413). Both
map an exception to a status with ``serving.pipeline.errors.status_of``.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.types import ExceptionHandlersMap

from serving.api.request_id import request_id_of
from serving.pipeline.errors import Status, status_of
from serving.pipeline.oip import error as oip_error
from serving.pipeline.oip import is_oip_path
from serving.pipeline.v1 import error as v1_error

logger = logging.getLogger(__name__)
AnyRequest = Request[Any, Any, Any]


def error_response(request: AnyRequest, status: Status) -> Response[bytes]:
    headers = {"Retry-After": str(status.retry_after_s)} if status.retry_after_s else None
    if is_oip_path(request.scope["path"]):
        code, body = oip_error(status)
    else:
        code, body = status.code, v1_error(status, request_id_of(request.scope))
    return Response(body, status_code=code, media_type="application/json", headers=headers)


def _domain_error(request: AnyRequest, exc: Exception) -> Response[bytes]:
    status = status_of(exc)
    if status.code == 500:
        logger.exception("request %s: unhandled error", request_id_of(request.scope), exc_info=exc)
    return error_response(request, status)


def _http_error(request: AnyRequest, exc: Exception) -> Response[bytes]:
    assert isinstance(exc, HTTPException)
    response = error_response(request, Status(exc.status_code, str(exc.detail)))
    response.headers.update(dict(exc.headers or {}))
    return response


def exception_handlers() -> ExceptionHandlersMap:
    return {HTTPException: _http_error, Exception: _domain_error}
