"""``inference.GRPCInferenceService``: the Open Inference Protocol's gRPC methods over the
process's :class:`~serving.lifecycle.Service`, with the HTTP ``/v2`` routes' content.

Every method first passes the pipeline's access stage (serving/grpc/access.py) with its scope,
then answers from the same ``Service`` the HTTP routes use (readiness, versions, load/unload);
``ModelInfer`` is one more door of the request pipeline (serving/pipeline/stages.py): admitted
once (the call's deadline is its deadline), decoded by the gRPC codec against the model's
contract, batched with the HTTP requests, encoded, and observed like them
(``protocol="grpc"``).
Failures leave as :class:`~serving.grpc.errors.StatusError` statuses (errors.py has the table);
anything unexpected is logged and answered ``INTERNAL`` without details.

Triton methods this service does not offer (streaming, shared memory, statistics, model config,
trace and log settings) answer ``UNIMPLEMENTED`` with a message that says what to use instead;
so does any other method name under the service.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Never, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from serving.batching import DrainingError
from serving.grpc.access import CallAccess, Context, Scope, metadata
from serving.grpc.codec import (
    LABEL_OUTPUT,
    decode_infer_request,
    encode_infer_response,
    timeout_s,
)
from serving.grpc.errors import StatusError, invalid, not_found, status_for
from serving.grpc.generated import grpc_service_pb2 as pb
from serving.lifecycle import NotReadyError, UnknownVersionError
from serving.pipeline import Pipeline, Ticket
from serving.pipeline.doors import Door
from serving.pipeline.head import RequestHead, request_id

logger = logging.getLogger(__name__)

SERVICE = "inference.GRPCInferenceService"
#: The route label of a ModelInfer call in metrics and spans.
INFER_ROUTE = f"/{SERVICE}/ModelInfer"
PLATFORM = "onnx_onnxv1"
#: The protocol extensions ServerMetadata lists: the HTTP side's (serving/app.py), as Triton
#: reports one list for both protocols.
EXTENSIONS = ("binary_tensor_data", "model_repository")
_SHARED_MEMORY = "shared memory is not supported: send tensor data in raw_input_contents"
#: Methods of Triton's GRPCInferenceService answered UNIMPLEMENTED, with what to use instead.
UNSUPPORTED: Mapping[str, str] = {
    "ModelStreamInfer": "ModelStreamInfer is not supported: send each request with ModelInfer "
    "(concurrent calls are batched together)",
    "ModelConfig": "ModelConfig is not supported: ModelMetadata describes the model's tensors",
    "ModelStatistics": "ModelStatistics is not supported: the statistics are Prometheus "
    "metrics on the HTTP port's GET /metrics",
    "TraceSetting": "TraceSetting is not supported: tracing is configured with the "
    "tracing_enabled / trace_sample_ratio settings and OTEL_* variables",
    "LogSettings": "LogSettings is not supported: the log level is the log_level setting",
    **{
        f"{kind}SharedMemory{verb}": _SHARED_MEMORY
        for kind in ("System", "Cuda")
        for verb in ("Status", "Register", "Unregister")
    },
}

Request = TypeVar("Request", bound=Message)
Response = TypeVar("Response", bound=Message)
Behaviour = Callable[[Request, Context], Awaitable[Response]]


def package_version() -> str:
    try:
        return importlib.metadata.version("mnist-inference")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


class InferenceServicer:
    """The service's methods; :meth:`handlers` registers them on a ``grpc.aio`` server."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.service = pipeline.service
        self.settings = pipeline.service.settings
        self.access = CallAccess(pipeline)
        self._server_metadata = pb.ServerMetadataResponse(
            name=self.settings.service_name,
            version=package_version(),
            extensions=sorted(EXTENSIONS),
        )

    # ------------------------------------------------------------------ registration
    def handlers(self) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
        """Method name -> handler, for ``add_generic_rpc_handlers`` and
        ``add_registered_method_handlers`` under :data:`SERVICE`."""
        return {
            "ServerLive": _unary(self, "read", self.server_live, pb.ServerLiveRequest),
            "ServerReady": _unary(self, "read", self.server_ready, pb.ServerReadyRequest),
            "ModelReady": _unary(self, "read", self.model_ready, pb.ModelReadyRequest),
            "ServerMetadata": _unary(self, "read", self.server_metadata, pb.ServerMetadataRequest),
            "ModelMetadata": _unary(self, "read", self.model_metadata, pb.ModelMetadataRequest),
            # None: model_infer checks access itself, once (it needs the decision's key name).
            "ModelInfer": _unary(self, None, self.model_infer, pb.ModelInferRequest),
            "RepositoryIndex": _unary(
                self, "admin", self.repository_index, pb.RepositoryIndexRequest
            ),
            "RepositoryModelLoad": _unary(
                self, "admin", self.repository_model_load, pb.RepositoryModelLoadRequest
            ),
            "RepositoryModelUnload": _unary(
                self, "admin", self.repository_model_unload, pb.RepositoryModelUnloadRequest
            ),
        }

    async def abort(self, context: Context, exc: Exception) -> Never:
        """End the call with the status for ``exc`` (``INTERNAL``, logged, when unexpected)."""
        status = status_for(exc)
        if status is None:
            logger.error("gRPC call failed", exc_info=exc)
            status = StatusError(grpc.StatusCode.INTERNAL, "internal error")
        await context.abort(status.code, status.message, status.trailers())

    # ------------------------------------------------------------------ health and metadata
    async def server_live(
        self, request: pb.ServerLiveRequest, context: Context
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def server_ready(
        self, request: pb.ServerReadyRequest, context: Context
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.service.ready)

    async def model_ready(
        self, request: pb.ModelReadyRequest, context: Context
    ) -> pb.ModelReadyResponse:
        # Not ready is an answer here, not an error; checking readiness first also keeps a
        # probe from counting as a refused request (admit() counts those).
        if request.name != self.settings.model_name or not self.service.ready:
            return pb.ModelReadyResponse(ready=False)
        try:
            self.service.admit(request.version or None)
        except (NotReadyError, DrainingError, UnknownVersionError):
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    async def server_metadata(
        self, request: pb.ServerMetadataRequest, context: Context
    ) -> pb.ServerMetadataResponse:
        return self._server_metadata

    async def model_metadata(
        self, request: pb.ModelMetadataRequest, context: Context
    ) -> pb.ModelMetadataResponse:
        self._check_model(request.name)
        _, model = self.service.admit(request.version or None)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=model.name,
            versions=[model.version] if request.version else self.service.versions(),
            platform=PLATFORM,
            inputs=[tensor(name=model.input_name, datatype="FP32", shape=[-1, model.num_features])],
            outputs=[
                tensor(name=model.output_name, datatype="FP32", shape=[-1, model.num_classes]),
                tensor(name=LABEL_OUTPUT, datatype="INT64", shape=[-1]),
            ],
        )

    # ------------------------------------------------------------------ inference
    async def model_infer(
        self, request: pb.ModelInferRequest, context: Context
    ) -> pb.ModelInferResponse:
        """The pipeline's stages for a gRPC call: admit (the access stage ran already) ->
        decode -> compute -> encode, observed; an outcome other than an answer raises."""
        arrived = time.monotonic()
        remaining_s: float | None = context.time_remaining()
        decision = self.access.check(context, "infer")
        head = RequestHead(
            authorization=None,  # checked above; never kept
            request_id=_latin1(metadata(context, "x-request-id")),
            traceparent=_latin1(metadata(context, "traceparent")),
            client_id=_latin1(metadata(context, "x-client-id")),
        )
        door = Door(
            None,
            INFER_ROUTE,
            request.model_name,
            request.model_version or None,
            protocol="grpc",
        )
        rows = request.inputs[0].shape[0] if request.inputs and request.inputs[0].shape else 1
        settings = self.settings
        default_s = settings.request_timeout_ms / 1000.0
        budget = min(remaining_s, default_s) if remaining_s is not None else default_s
        try:
            ticket = self.pipeline.admit(
                door, head, arrived, decision.key_name, timeout_s=budget, rows=max(int(rows), 1)
            )
        except Exception as exc:
            raise self._refused(door, head, arrived, exc, decision.key_name) from None
        with self.pipeline.observe(ticket) as seen:
            try:
                response = await self._infer(ticket, request, remaining_s)
            except asyncio.CancelledError:
                seen.status = 499  # the client went away: nothing was computed for it
                raise
            except Exception as exc:
                status = status_for(exc) or StatusError(grpc.StatusCode.INTERNAL, "internal error")
                self.pipeline.status(exc, ticket.request_id)  # logged and observed like HTTP
                seen.status = status.http_status
                raise status from None
            seen.status = 200
            return response

    async def _infer(
        self, ticket: Ticket, request: pb.ModelInferRequest, remaining_s: float | None
    ) -> pb.ModelInferResponse:
        contract = ticket.contract
        pixels, options = decode_infer_request(request, contract)
        settings = self.settings
        timeout = timeout_s(
            options,
            remaining_s,
            settings.request_timeout_ms / 1000.0,
            settings.max_request_timeout_ms / 1000.0,
        )
        outputs, ids = await self.pipeline.compute(ticket, pixels, timeout)
        return encode_infer_response(outputs, options, contract, ids)

    def _refused(
        self, door: Door, head: RequestHead, arrived: float, exc: Exception, key: str
    ) -> StatusError:
        """An admission refusal as a status, logged and observed like an HTTP refusal."""
        rid = request_id(head.request_id)
        self.pipeline.status(exc, rid)
        status = status_for(exc) or StatusError(grpc.StatusCode.INTERNAL, "internal error")
        seconds = time.monotonic() - arrived
        self.pipeline.observer.on_refused(
            door.template, status.http_status, seconds, key, rid, door.protocol
        )
        return status

    # ------------------------------------------------------------------ repository extension
    async def repository_index(
        self, request: pb.RepositoryIndexRequest, context: Context
    ) -> pb.RepositoryIndexResponse:
        entry = pb.RepositoryIndexResponse.ModelIndex
        return pb.RepositoryIndexResponse(
            models=[
                entry(name=self.settings.model_name, version=str(version), state=state, reason=why)
                for version, state, why in self.service.versions_set.index()
                if state == "READY" or not request.ready
            ]
        )

    async def repository_model_load(
        self, request: pb.RepositoryModelLoadRequest, context: Context
    ) -> pb.RepositoryModelLoadResponse:
        """What the HTTP load route does: serve what the repository holds now, retrying refused
        versions; INVALID_ARGUMENT when the newest version present is refused."""
        self._check_model(request.model_name)
        if request.parameters:  # Triton's config override and file upload: not honoured
            raise invalid(f"load parameters are not supported: {sorted(request.parameters)}")
        result = await self.service.load()
        newest = self.service.model
        if result.refused and (newest is None or max(result.refused) > int(newest.version)):
            version = max(result.refused)
            raise invalid(f"version {version} refused: {result.refused[version]}")
        return pb.RepositoryModelLoadResponse()

    async def repository_model_unload(
        self, request: pb.RepositoryModelUnloadRequest, context: Context
    ) -> pb.RepositoryModelUnloadResponse:
        # Parameters (Triton's unload_dependents) are ignored: this model has no dependents.
        self._check_model(request.model_name)
        await self.service.unload()
        return pb.RepositoryModelUnloadResponse()

    def _check_model(self, name: str) -> None:
        if name != self.settings.model_name:
            raise not_found(
                f"unknown model {name!r}: this server serves {self.settings.model_name!r}"
            )


def _latin1(value: str | None) -> bytes | None:
    return None if value is None else value.encode("latin-1", "replace")


def _unary(
    servicer: InferenceServicer,
    scope: Scope | None,
    behaviour: Behaviour[Request, Response],
    request_type: type[Request],
) -> grpc.RpcMethodHandler[bytes, Response]:
    """A unary handler: access check (unless ``scope`` is None: the behaviour checks), the
    request parsed, then ``behaviour``; an exception becomes a status.

    The handler parses the request itself: a deserializer's exception is grpcio's, answered
    ``UNKNOWN`` with a logged traceback, for bytes the client sent (INVALID_ARGUMENT here)."""

    async def handle(raw: bytes, context: Context) -> Response:
        try:
            if scope is not None:
                servicer.access.check(context, scope)
            try:
                request = request_type.FromString(raw)
            except DecodeError:
                raise invalid(
                    f"malformed {request_type.DESCRIPTOR.name}: not its protobuf encoding"
                ) from None
            return await behaviour(request, context)
        except (asyncio.CancelledError, grpc.aio.AbortError):  # client gone / already answered
            raise
        except Exception as exc:
            await servicer.abort(context, exc)

    return grpc.unary_unary_rpc_method_handler(
        handle,  # grpc.aio takes coroutine functions
        request_deserializer=None,  # the bytes as they came: parsed above
        response_serializer=_serialize,
    )


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


class Unimplemented(grpc.GenericRpcHandler):
    """Any other method under :data:`SERVICE`: ``UNIMPLEMENTED`` with a message (gRPC's own
    answer for an unknown method says only "Method not found!")."""

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        prefix = f"/{SERVICE}/"
        method = handler_call_details.method
        if not method.startswith(prefix):
            return None  # another service's (health, reflection): not ours to answer
        name = method.removeprefix(prefix)
        message = UNSUPPORTED.get(name, f"{name} is not a method of {SERVICE} on this server")

        async def refuse(requests: object, context: Context) -> None:
            # Stream-stream fits every method's shape: nothing is read before the answer.
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, message)

        return grpc.stream_stream_rpc_method_handler(refuse)
