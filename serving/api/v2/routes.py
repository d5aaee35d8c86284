"""``/v2`` handlers: server and model metadata, health, the repository extension, and the
OpenAPI description of infer.

Infer is served by the pipeline with the OIP codec (serving/pipeline/oip.py), through the same
admission, deadlines and batcher as ``/v1/predict``, so v1 and v2 requests share batches,
metrics and traces. Like v1's ``predict``, the ``infer`` handler here only documents the route
(and answers 405 for other methods); it never runs. Errors are raised as the pipeline's
exceptions; the app's handlers give them the OIP shape on ``/v2`` paths.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

import msgspec
from litestar import Request, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.response.base import ASGIResponse

from serving.batching import Batcher
from serving.lifecycle import NotReadyError, Service
from serving.model import LoadedModel
from serving.pipeline.errors import MalformedBodyError, NotFoundError
from serving.pipeline.oip import LABEL_OUTPUT, OipError

AnyRequest = Request[Any, Any, Any]
JSON = "application/json"
PLATFORM = "onnx_onnxv1"
_encoder = msgspec.json.Encoder()
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


def build_v2_handlers(service: Service, extensions: list[str]) -> list[HTTPRouteHandler]:
    """The ``/v2`` routes over the process's ``Service``; ``extensions`` are those that work."""
    settings = service.settings
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
        request_max_body_size=settings.max_body_bytes,
        responses=_errors(400, 404, 413, 500, 503, 504),
    )
    async def infer() -> None:
        raise RuntimeError("OIP infer is served by the pipeline before Litestar routes it")

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
