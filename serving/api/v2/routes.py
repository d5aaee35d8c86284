"""``/v2`` handlers: server and model metadata, health, and infer on the service's batcher.

Infer takes the raw ``Request`` like ``POST /v1/predict`` (no per-request validation layer) and
goes through the same ``Service.admit()``, deadlines and batcher, so v1 and v2 requests share
batches, metrics (by route template) and traces. Errors are raised as the API's exceptions; the
app's handlers give them the OIP shape on ``/v2`` paths.
"""

from __future__ import annotations

import importlib.metadata
import time
from collections.abc import Callable
from typing import Any

import msgspec
from litestar import Request, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.response.base import ASGIResponse

from serving.admission import admit as admit_at_arrival
from serving.admission import expected_oip_rows
from serving.api.errors import MalformedBodyError, NotFoundError
from serving.api.routes import read_body
from serving.api.v2.codec import (
    LABEL_OUTPUT,
    Contract,
    decode_infer,
    decompress,
    encode_infer,
)
from serving.api.v2.errors import OipError
from serving.batching import Batcher
from serving.lifecycle import NotReadyError, Service
from serving.model import LoadedModel
from serving.transport.arrival import arrived_at

AnyRequest = Request[Any, Any, Any]
#: One feedback id per output row (``serving.feedback.loop.Feedback.ids_for``).
IdsFor = Callable[[Any, str], list[str]]
JSON = "application/json"
BINARY = "application/octet-stream"
PLATFORM = "onnx_onnxv1"
_encoder = msgspec.json.Encoder()
_CONTENT_TYPE = b"content-type"
_CONTENT_LENGTH = b"content-length"
_CONTENT_ENCODING = b"content-encoding"
_HEADER_LENGTH = b"inference-header-content-length"
MODEL_PATHS = ["/v2/models/{name:str}", "/v2/models/{name:str}/versions/{version:str}"]


class TensorMetadata(msgspec.Struct):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(msgspec.Struct):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class RepositoryEntry(msgspec.Struct):
    name: str
    version: str
    state: str
    reason: str


class ServerMetadata(msgspec.Struct):
    name: str
    version: str
    extensions: list[str]


def _package_version() -> str:
    try:
        return importlib.metadata.version("mnist-inference")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def _infer_headers(
    scope_headers: Any,
) -> tuple[bytes, bytes | None, bytes | None, bytes | None]:
    """``(content-type, content-length, content-encoding, inference-header-content-length)``,
    in one pass."""
    content_type = b""
    length = encoding = header_length = None
    for key, value in scope_headers:
        if key == _CONTENT_TYPE:
            content_type = value
        elif key == _CONTENT_LENGTH:
            length = value
        elif key == _CONTENT_ENCODING:
            encoding = value
        elif key == _HEADER_LENGTH:
            header_length = value
    return content_type, length, encoding, header_length


def model_metadata(model: LoadedModel, versions: list[str]) -> ModelMetadata:
    return ModelMetadata(
        name=model.name,
        versions=versions,
        platform=PLATFORM,
        inputs=[TensorMetadata(model.input_name, "FP32", [-1, model.num_features])],
        outputs=[
            TensorMetadata(model.output_name, "FP32", [-1, model.num_classes]),
            TensorMetadata(LABEL_OUTPUT, "INT64", [-1]),
        ],
    )


def _errors(*codes: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the OIP error body (``{"error": "<message>"}``) at ``codes``."""
    return {
        code: ResponseSpec(OipError, generate_examples=False, description=_ERROR_TEXT[code])
        for code in codes
    }


_ERROR_TEXT = {
    400: "Bad request: the message says which input, shape, datatype or size is wrong",
    404: "No such model or version, or the model is unloaded",
    413: "Body larger than max_body_bytes",
    500: "Inference failed for this request",
    503: "Not ready, draining, or shedding load; retry after Retry-After seconds",
    504: "The request deadline passed before it was computed",
}
_MODEL_ERRORS = _errors(400, 404, 503)


def build_v2_handlers(
    service: Service, extensions: list[str], ids_for: IdsFor | None = None
) -> list[HTTPRouteHandler]:
    """The ``/v2`` routes over the process's ``Service``; ``extensions`` are those that work."""
    settings = service.settings
    default_timeout_s = settings.request_timeout_ms / 1000.0
    max_timeout_s = settings.max_request_timeout_ms / 1000.0
    max_body_bytes = settings.max_body_bytes
    server = _encoder.encode(
        ServerMetadata(settings.service_name, _package_version(), sorted(extensions))
    )

    def served_model(request: AnyRequest) -> str:
        """The ``{name}`` of the path, 404 unless it is the model this server serves."""
        name: str = request.scope["path_params"]["name"]
        if name != settings.model_name:
            raise NotFoundError(
                f"unknown model {name!r}: this server serves {settings.model_name!r}"
            )
        return name

    def admit(request: AnyRequest) -> tuple[Batcher, LoadedModel]:
        """The batcher and model a ``/v2/models/{name}[/versions/{version}]`` path means
        (404 if none is served)."""
        served_model(request)
        return service.admit(request.scope["path_params"].get("version"))

    def timeout_s(microseconds: float | None) -> float:
        if microseconds is None:
            return default_timeout_s
        return min(microseconds / 1e6, max_timeout_s)

    @get("/v2", summary="OIP server metadata", tags=["v2"])
    async def server_metadata() -> ASGIResponse:
        return ASGIResponse(body=server, media_type=JSON)

    @get("/v2/health/live", summary="OIP liveness", tags=["v2"])
    async def live() -> ASGIResponse:
        return ASGIResponse(body=b'{"live":true}', media_type=JSON)

    @get(
        "/v2/health/ready",
        summary='OIP readiness: 200 once a model is served, 503 ({"ready": false}) before',
        tags=["v2"],
    )
    async def ready() -> ASGIResponse:
        if service.ready:
            return ASGIResponse(body=b'{"ready":true}', media_type=JSON)
        return ASGIResponse(body=b'{"ready":false}', media_type=JSON, status_code=503)

    @get(MODEL_PATHS, summary="OIP model metadata", tags=["v2"], responses=_MODEL_ERRORS)
    async def metadata(request: AnyRequest) -> ASGIResponse:
        _, model = admit(request)
        pinned = "version" in request.scope["path_params"]
        versions = [model.version] if pinned else service.versions()
        return ASGIResponse(body=_encoder.encode(model_metadata(model, versions)), media_type=JSON)

    @get(
        [f"{path}/ready" for path in MODEL_PATHS],
        summary="OIP model readiness",
        tags=["v2"],
        responses=_MODEL_ERRORS,
    )
    async def model_ready(request: AnyRequest) -> ASGIResponse:
        try:
            _, model = admit(request)
        except NotReadyError:
            body = _encoder.encode({"name": request.scope["path_params"]["name"], "ready": False})
            return ASGIResponse(body=body, media_type=JSON, status_code=503)
        return ASGIResponse(
            body=_encoder.encode({"name": model.name, "version": model.version, "ready": True}),
            media_type=JSON,
        )

    @post(
        [f"{path}/infer" for path in MODEL_PATHS],
        status_code=200,
        summary="OIP inference: JSON or binary tensor data, same batcher as /v1/predict",
        tags=["v2"],
        request_max_body_size=max_body_bytes,
        responses=_errors(400, 404, 413, 500, 503, 504),
    )
    async def infer(request: Request[Any, Any, Any]) -> ASGIResponse:
        started = arrived_at(request.scope, time.monotonic())  # bytes' arrival (arrival.py)
        served_model(request)
        content_type, length, encoding, header_length = _infer_headers(request.scope["headers"])
        # Shed before the body is read, like /v1/predict; parameters.timeout is in the body, so
        # admission judges the wait against the default deadline.
        batcher, model = admit_at_arrival(
            service,
            expected_oip_rows(content_type, length, header_length),
            started + default_timeout_s,
            version=request.scope["path_params"].get("version"),
        )
        body = await read_body(request.receive, max_body_bytes, length)
        body = decompress(body, encoding, max_body_bytes)
        contract = Contract(model.input_name, model.output_name, settings.max_instances)
        inference = decode_infer(body, header_length, contract)
        deadline = started + timeout_s(inference.timeout_us)
        probabilities = await batcher.submit(inference.pixels, deadline)
        ids = ids_for(probabilities, model.version) if ids_for is not None else None
        encoded = encode_infer(
            probabilities, inference, model.name, model.version, model.output_name, ids
        )
        if encoded.header_length is None:
            return ASGIResponse(body=encoded.body, media_type=JSON)
        return ASGIResponse(
            body=encoded.body,
            media_type=BINARY,
            headers={"Inference-Header-Content-Length": str(encoded.header_length)},
        )

    @post("/v2/repository/index", status_code=200, summary="OIP repository index", tags=["v2"])
    async def repository_index() -> ASGIResponse:
        rows = [
            RepositoryEntry(settings.model_name, str(version), state, reason)
            for version, state, reason in service.versions_set.index()
        ]
        return ASGIResponse(body=_encoder.encode(rows), media_type=JSON)

    @post(
        "/v2/repository/models/{name:str}/load",
        status_code=200,
        summary="OIP load: serve the repository's versions now (what polling does)",
        tags=["v2"],
        responses=_errors(400, 404),
    )
    async def load(request: AnyRequest) -> ASGIResponse:
        served_model(request)
        result = await service.load()
        newest = service.model
        if result.refused and (newest is None or max(result.refused) > int(newest.version)):
            version = max(result.refused)
            raise MalformedBodyError(f"version {version} refused: {result.refused[version]}")
        return ASGIResponse(body=b"{}", media_type=JSON)

    @post(
        "/v2/repository/models/{name:str}/unload",
        status_code=200,
        summary="OIP unload: stop serving the model until it is loaded again",
        tags=["v2"],
        responses=_errors(400, 404),
    )
    async def unload(request: AnyRequest) -> ASGIResponse:
        served_model(request)
        await service.unload()
        return ASGIResponse(body=b"{}", media_type=JSON)

    return [
        server_metadata,
        live,
        ready,
        metadata,
        model_ready,
        infer,
        repository_index,
        load,
        unload,
    ]
