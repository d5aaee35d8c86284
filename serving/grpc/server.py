"""One worker's gRPC server: ``grpc.aio`` on the worker's own event loop (uvloop, beside
uvicorn), serving ``inference.GRPCInferenceService``, the standard health service and server
reflection on ``grpc_port``.

Lifecycle, driven by the worker's DrainingServer (serving/transport/server.py):

* :meth:`GrpcServer.start` once the Service is ready (a Litestar start-up hook: after the model
  is loaded and warmed up, before the HTTP listener opens), so no call meets a starting model;
* :meth:`GrpcServer.begin_drain` on the first SIGTERM: health turns ``NOT_SERVING`` for good;
  new calls meet the draining Service and get ``UNAVAILABLE`` (with retry info) while calls
  already queued are computed and answered, exactly like HTTP's 503 window;
* :meth:`GrpcServer.stop` once the Service drained: the listener closes (clients get GOAWAY),
  the calls still running finish within the grace period.

Limits: messages up to ``max_body_bytes`` both ways (``RESOURCE_EXHAUSTED`` beyond), at most
``grpc_max_concurrent_streams`` calls at once per connection. With ``workers > 1`` every worker
binds the port with ``SO_REUSEPORT`` (the kernel spreads connections, as for HTTP); a single
worker binds it exclusively, so a port already taken fails the start instead of being shared.

Health: ``""`` (the whole server, what Kubernetes' gRPC probe asks) and
``inference.GRPCInferenceService`` are ``SERVING`` exactly when the Service is ready (``/readyz``
200); a ``Check`` reads the state then, ``Watch`` streams see changes within a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import grpc
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import SERVICE_NAME as HEALTH_SERVICE
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection, reflection_pb2

from serving.grpc.generated import grpc_service_pb2 as pb
from serving.grpc.service import SERVICE, InferenceServicer, Unimplemented
from serving.lifecycle import Service
from serving.pipeline import Pipeline

logger = logging.getLogger(__name__)

#: How often health follows readiness for ``Watch`` streams (``Check`` reads it directly).
HEALTH_REFRESH_S = 1.0


class GrpcStartError(RuntimeError):
    """The gRPC port could not be bound; the message says which and what to do."""


class Health(health_aio.HealthServicer):
    """The standard health service, following the Service's readiness."""

    def __init__(self, service: Service) -> None:
        super().__init__()
        self._service = service

    async def refresh(self) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if self._service.ready
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", SERVICE):
            await self.set(name, status)  # ignored once enter_graceful_shutdown() ran

    async def Check(self, request: Any, context: Any) -> Any:  # noqa: N802  # gRPC's name
        await self.refresh()
        return await super().Check(request, context)


def reflection_pool() -> descriptor_pool.DescriptorPool:
    """The descriptors reflection describes: this service's (kept out of the default pool:
    scripts/grpc_code.py says why), health's and reflection's own."""
    pool = descriptor_pool.DescriptorPool()
    for file in (pb.DESCRIPTOR, health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR):
        pool.AddSerializedFile(file.serialized_pb)
    return pool


def address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class GrpcServer:
    """The worker's gRPC door to ``pipeline``; ``start`` it in the worker's event loop."""

    def __init__(self, pipeline: Pipeline, *, reuse_port: bool = False) -> None:
        self.service = pipeline.service
        self.settings = pipeline.service.settings
        self.servicer = InferenceServicer(pipeline)
        self.reuse_port = reuse_port
        self.port: int | None = None
        self._server: grpc.aio.Server | None = None
        self._health: Health | None = None
        self._refresher: asyncio.Task[None] | None = None

    def options(self) -> list[tuple[str, int]]:
        settings = self.settings
        return [
            ("grpc.so_reuseport", 1 if self.reuse_port else 0),
            ("grpc.max_receive_message_length", settings.max_body_bytes),
            ("grpc.max_send_message_length", settings.max_body_bytes),
            ("grpc.max_concurrent_streams", settings.grpc_max_concurrent_streams),
        ]

    async def start(self) -> int:
        """Bind ``host:grpc_port`` and serve; the bound port. Raises :class:`GrpcStartError`."""
        server = grpc.aio.server(options=self.options())
        handlers = self.servicer.handlers()
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, handlers), Unimplemented())
        )
        # Registered methods are matched in the C core, before any generic handler runs.
        server.add_registered_method_handlers(SERVICE, handlers)
        self._health = Health(self.service)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (SERVICE, HEALTH_SERVICE, reflection.SERVICE_NAME), server, pool=reflection_pool()
        )
        where = address(self.settings.host, self.settings.grpc_port)
        try:
            self.port = server.add_insecure_port(where)
        except RuntimeError as exc:
            raise GrpcStartError(
                f"cannot serve gRPC on {where} ({exc}): is the port taken? Set SERVING_GRPC_PORT "
                "(--grpc-port) to a free port, or 0 to turn gRPC off"
            ) from None
        await server.start()
        self._server = server
        await self._health.refresh()
        self._refresher = asyncio.get_running_loop().create_task(
            self._follow_readiness(), name="grpc-health"
        )
        logger.info("gRPC: %s on %s", SERVICE, address(self.settings.host, self.port))
        return self.port

    async def _follow_readiness(self) -> None:
        assert self._health is not None
        while True:
            await asyncio.sleep(HEALTH_REFRESH_S)
            try:
                await self._health.refresh()
            except Exception:  # never let the follower die: Check still reads the state
                logger.exception("gRPC health refresh failed")

    async def begin_drain(self) -> None:
        """Health says ``NOT_SERVING`` from now on (new calls meet the draining Service)."""
        if self._health is not None:
            await self._health.enter_graceful_shutdown()

    async def stop(self, grace_s: float) -> None:
        """Close the listener; calls still running get up to ``grace_s`` to finish."""
        await self.begin_drain()
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None
        if self._server is not None:
            await self._server.stop(grace_s)
            self._server = None
