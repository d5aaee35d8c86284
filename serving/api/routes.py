"""HTTP handlers. ``POST /v1/predict`` is where a request enters the service.

The predict handler takes the raw ``Request`` and returns encoded bytes: no dependency injection
or body validation layer runs per request (it costs CPU on a ~100 µs budget); decoding.py does the
validation with msgspec + NumPy instead. The OpenAPI document still describes the bodies
(``_PredictOperation`` and ``responses``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
from litestar import Request, Response, get, post
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
)
from litestar.response.base import ASGIResponse
from litestar.types import Receive

from serving.admission import admit, expected_rows, header_timeout_s
from serving.api.decoding import Limits, decode
from serving.api.errors import ClientDisconnectedError, MalformedBodyError
from serving.api.schemas import (
    BatchingInfo,
    ErrorBody,
    ModelInfo,
    ModelRef,
    ModelsResponse,
    Prediction,
    PredictResponse,
    Status,
)
from serving.lifecycle import NotReadyError, Service
from serving.model import LoadedModel
from serving.transport.arrival import arrived_at

JSON = "application/json"
_encoder = msgspec.json.Encoder()
_TIMEOUT_HEADER = b"x-request-timeout-ms"
_CONTENT_TYPE = b"content-type"
_CONTENT_LENGTH = b"content-length"

_ERRORS = {
    400: "Malformed body (invalid JSON, unreadable PNG, bad header)",
    404: "The model is unloaded (POST /v2/repository/models/{name}/load serves it again)",
    408: "Headers or body not received within header_timeout_s / body_timeout_s (closed)",
    413: "Body larger than max_body_bytes",
    415: "Unsupported content type",
    422: "Well-formed but invalid instances; the message names the instance index",
    431: "Request line and headers larger than max_header_bytes (closed)",
    500: "Inference failed for this request (quote the request id)",
    503: "Not ready, draining, queue full, or the estimated wait exceeds the deadline; "
    "retry after Retry-After seconds",
    504: "The request deadline passed before it was computed",
}


def _number() -> Schema:
    return Schema(type=OpenAPIType.NUMBER, minimum=0, maximum=1)


def _row() -> Schema:
    return Schema(type=OpenAPIType.ARRAY, items=_number(), min_items=28, max_items=28)


@dataclass
class _PredictOperation(Operation):
    """Documents the three request encodings the handler decodes itself."""

    def __post_init__(self) -> None:
        instance = Schema(
            one_of=[
                Schema(type=OpenAPIType.ARRAY, items=_number(), min_items=784, max_items=784),
                Schema(
                    type=OpenAPIType.ARRAY,
                    items=_row(),
                    min_items=28,
                    max_items=28,
                ),
            ]
        )
        binary = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)
        self.request_body = RequestBody(
            required=True,
            description="JSON instances (pixels / 255), raw N x 784 uint8 bytes, or one 28x28 PNG",
            content={
                JSON: OpenAPIMediaType(
                    schema=Schema(
                        type=OpenAPIType.OBJECT,
                        required=["instances"],
                        properties={
                            "instances": Schema(type=OpenAPIType.ARRAY, items=instance, min_items=1)
                        },
                    )
                ),
                "application/octet-stream": OpenAPIMediaType(schema=binary),
                "image/png": OpenAPIMediaType(schema=binary),
            },
        )


def _request_headers(scope_headers: Any) -> tuple[bytes, bytes | None, bytes | None]:
    """``(content-type, content-length, x-request-timeout-ms)`` in one pass over the raw headers
    (Litestar's ``Headers`` object would parse them all, per request)."""
    content_type, length, timeout = b"", None, None
    for key, value in scope_headers:
        if key == _CONTENT_TYPE:
            content_type = value
        elif key == _CONTENT_LENGTH:
            length = value
        elif key == _TIMEOUT_HEADER:
            timeout = value
    return content_type, length, timeout


async def read_body(receive: Receive, limit: int, announced: bytes | None) -> bytes:
    """The request body, refused with 413 past ``limit`` bytes (announced or actually received).

    The same rules as ``Request.body()``, without its per-request ``Headers`` parsing and async
    generator: this is on every prediction's path.
    """
    if announced is not None and announced.isdigit() and int(announced) > limit:
        raise RequestEntityTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect: the client is gone
            raise ClientDisconnectedError
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestEntityTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


#: ``(labels, confidences, model version) -> prediction ids`` (``Feedback.issue_ids``).
IssueIds = Callable[[Sequence[int], Sequence[float], str], list[str]]


def encode_predictions(
    probabilities: npt.NDArray[np.float32], model: ModelRef, issue_ids: IssueIds
) -> bytes:
    labels = probabilities.argmax(axis=1).tolist()
    confidences = probabilities[np.arange(probabilities.shape[0]), labels].tolist()
    ids = issue_ids(labels, confidences, model.version)
    predictions = [
        Prediction(label, confidence, row, prediction_id)
        for label, confidence, row, prediction_id in zip(
            labels, confidences, probabilities.tolist(), ids, strict=True
        )
    ]
    return _encoder.encode(PredictResponse(predictions, model))


def model_info(model: LoadedModel, batching: BatchingInfo) -> ModelInfo:
    meta = model.metadata
    return ModelInfo(
        name=model.name,
        version=model.version,
        variant=model.variant,
        sha256=model.sha256,
        created_at=meta.created_at,
        inputs=[msgspec.to_builtins(t) for t in meta.inputs],
        outputs=[msgspec.to_builtins(t) for t in meta.outputs],
        labels=meta.labels,
        test_accuracy=meta.test_accuracy,
        preprocessing=msgspec.to_builtins(meta.preprocessing),
        batching=batching,
    )


def build_route_handlers(service: Service, issue_ids: IssueIds) -> list[HTTPRouteHandler]:
    """The app's routes, closed over the process's ``Service`` (nothing global) and the
    feedback's id issuer."""
    settings = service.settings
    limits = Limits(max_instances=settings.max_instances)
    default_timeout_s = settings.request_timeout_ms / 1000.0
    max_timeout_s = settings.max_request_timeout_ms / 1000.0
    max_body_bytes = settings.max_body_bytes

    def timeout_s(raw: bytes | None) -> float:
        try:
            return header_timeout_s(raw, default_timeout_s, max_timeout_s)
        except ValueError as exc:
            raise MalformedBodyError(str(exc)) from None

    @post(
        "/v1/predict",
        status_code=200,
        summary="Classify digits",
        description="Send instances as JSON, raw uint8 bytes or one PNG; predictions come back "
        "in instance order. Header X-Request-Timeout-Ms overrides the deadline.",
        operation_class=_PredictOperation,
        responses={
            200: ResponseSpec(
                PredictResponse,
                generate_examples=False,
                description="Predictions in instance order",
            ),
            **{
                code: ResponseSpec(ErrorBody, generate_examples=False, description=text)
                for code, text in _ERRORS.items()
            },
        },
        request_max_body_size=settings.max_body_bytes,
    )
    async def predict(request: Request[Any, Any, Any]) -> ASGIResponse:
        started = time.monotonic()
        content_type, length, timeout = _request_headers(request.scope["headers"])
        # Counted from when its bytes arrived: the time they waited unread is spent too.
        deadline = arrived_at(request.scope, started) + timeout_s(timeout)
        # Shed before spending: refused from the headers alone, the body is never read.
        batcher, model = admit(service, expected_rows(content_type, length), deadline, started)
        body = await read_body(request.receive, max_body_bytes, length)
        pixels = decode(content_type.decode("latin-1"), body, limits)
        probabilities = await batcher.submit(pixels, deadline)
        # An ASGIResponse is sent as is: Litestar's Response -> ASGIResponse step is skipped.
        return ASGIResponse(
            body=encode_predictions(probabilities, ModelRef(model.name, model.version), issue_ids),
            media_type=JSON,
        )

    @get(
        "/healthz",
        summary="Liveness: 200 while the process runs",
        responses={200: ResponseSpec(Status, generate_examples=False, description="Alive")},
    )
    async def healthz() -> Response[bytes]:
        return Response(_encoder.encode(Status("ok")), media_type=JSON)

    @get(
        "/readyz",
        summary="Readiness: 200 once the model is loaded and warmed up; 503 starting/draining",
        responses={
            200: ResponseSpec(Status, generate_examples=False, description="Ready"),
            503: ResponseSpec(Status, generate_examples=False, description="Starting or draining"),
        },
    )
    async def readyz() -> Response[bytes]:
        status = 200 if service.ready else 503
        body = _encoder.encode(Status(service.phase.value))
        return Response(body, status_code=status, media_type=JSON)

    @get(
        "/v1/models",
        summary="The served model versions (newest first) and batching settings",
        responses={
            200: ResponseSpec(ModelsResponse, generate_examples=False, description="Models"),
            503: ResponseSpec(ErrorBody, generate_examples=False, description="Not loaded yet"),
        },
    )
    async def models() -> Response[bytes]:
        served = service.served_models()
        if not served:
            raise NotReadyError("the model is not loaded yet")
        batching = BatchingInfo(
            max_batch_size=settings.max_batch_size,
            max_batch_delay_ms=settings.max_batch_delay_ms,
            max_queue_size=settings.max_queue_size,
            max_instances=settings.max_instances,
            request_timeout_ms=settings.request_timeout_ms,
        )
        infos = [model_info(model, batching) for model in served]
        return Response(_encoder.encode(ModelsResponse(infos)), media_type=JSON)

    return [predict, healthz, readyz, models]
