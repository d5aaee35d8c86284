"""The v1 routes Litestar serves: ``/healthz``, ``/readyz``, ``/v1/models``, and the OpenAPI
description of ``POST /v1/predict``.

Predictions are served by the pipeline (serving/pipeline/), which the app hands every
``POST /v1/predict`` before Litestar routes anything (serving/app.py): Litestar's request,
dependency and response layers cost more than the rest of a small request's path together.
The ``predict`` handler below is how the route gets its OpenAPI operation (the three request
encodings, every status) and how other methods on the path get a 405; it never runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import msgspec
from litestar import Response, get, post
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

from serving.api.schemas import (
    BatchingInfo,
    ErrorBody,
    ModelInfo,
    ModelsResponse,
    PredictResponse,
    Status,
)
from serving.lifecycle import NotReadyError, Service
from serving.model import LoadedModel

JSON = "application/json"
_encoder = msgspec.json.Encoder()

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


def predict_operation(features: int) -> type[Operation]:
    """The operation of ``POST /v1/predict`` for a model of ``features`` pixels: the three
    request encodings the pipeline's v1 codec decodes."""
    side = math.isqrt(features)
    flat = Schema(type=OpenAPIType.ARRAY, items=_number(), min_items=features, max_items=features)
    row = Schema(type=OpenAPIType.ARRAY, items=_number(), min_items=side, max_items=side)
    nested = Schema(type=OpenAPIType.ARRAY, items=row, min_items=side, max_items=side)
    instance = Schema(one_of=[flat, nested]) if side * side == features else flat

    @dataclass
    class PredictOperation(Operation):
        def __post_init__(self) -> None:
            binary = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)
            self.request_body = RequestBody(
                required=True,
                description=f"JSON instances (pixels / 255), raw N x {features} uint8 bytes, or "
                f"one {side}x{side} PNG",
                content={
                    JSON: OpenAPIMediaType(
                        schema=Schema(
                            type=OpenAPIType.OBJECT,
                            required=["instances"],
                            properties={
                                "instances": Schema(
                                    type=OpenAPIType.ARRAY, items=instance, min_items=1
                                )
                            },
                        )
                    ),
                    "application/octet-stream": OpenAPIMediaType(schema=binary),
                    "image/png": OpenAPIMediaType(schema=binary),
                },
            )

    return PredictOperation


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


def build_route_handlers(service: Service, features: int) -> list[HTTPRouteHandler]:
    """The app's v1 routes, closed over the process's ``Service`` (nothing global);
    ``features``: the served model's input width, for the documented request bodies."""
    settings = service.settings

    @post(
        "/v1/predict",
        status_code=200,
        summary="Classify digits",
        description="Send instances as JSON, raw uint8 bytes or one PNG; predictions come back "
        "in instance order. Header X-Request-Timeout-Ms overrides the deadline.",
        operation_class=predict_operation(features),
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
    async def predict() -> None:
        raise RuntimeError("POST /v1/predict is served by the pipeline before Litestar routes it")

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
