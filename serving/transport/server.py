"""The HTTP server process: uvicorn (uvloop + httptools) with a draining shutdown.

Why a ``uvicorn.Server`` subclass: plain uvicorn stops accepting and closes idle connections on
the first SIGTERM. Here the first SIGTERM/SIGINT first DRAINS: ``/readyz`` and new predictions
answer 503 (so a load balancer stops routing here) while every queued and in-flight request is
computed and answered; then (bounded by ``drain_timeout_s``) uvicorn's normal graceful shutdown
finishes open responses and runs the lifespan shutdown. A second signal forces exit.
With ``workers > 1`` each worker process is such a server (serving/transport/supervisor.py).
The worker's gRPC server (serving/grpc/, on ``grpc_port``) runs on the same event loop: it starts
once the Service is ready, turns unhealthy with the first signal, and stops after the drain.

uvicorn rather than granian: they tied on this service (docs/decisions.md, "uvicorn, not
granian"), and this draining shutdown is built on uvicorn's Server.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn

from serving.app import ServiceApp, create_app
from serving.lifecycle import Service
from serving.settings import Settings
from serving.transport.listener import refuse_new_connections
from serving.transport.protocol import ConnectionLimits, guarded_protocol
from serving.transport.supervisor import Supervisor

if TYPE_CHECKING:
    from serving.grpc import GrpcServer

logger = logging.getLogger(__name__)

AppFactory = Callable[[Settings], ServiceApp]

#: After the listener stops taking handshakes: time to accept what the kernel had queued and to
#: answer the requests on those connections (503 + Connection: close) before they are closed.
LISTENER_SETTLE_S = 0.25


class DrainingServer(uvicorn.Server):
    """A uvicorn server whose app is built in-process (per worker) and that drains on SIGTERM."""

    def __init__(
        self,
        config: uvicorn.Config,
        settings: Settings,
        app_factory: AppFactory = create_app,
        *,
        reuse_port: bool = False,
    ) -> None:
        """``reuse_port``: this is one worker of several, binding the gRPC port beside them."""
        super().__init__(config)
        self.settings = settings
        self.app_factory = app_factory
        self.reuse_port = reuse_port
        self.service: Service | None = None
        self.grpc: GrpcServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task[None] | None = None
        self._signalled = False

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        # Built here, not in the parent: with workers > 1 each process owns its model + batcher.
        app = self.app_factory(self.settings)
        self.service = app.service
        if self.settings.grpc_port:
            from serving.grpc import GrpcServer  # late: no grpc import when gRPC is off

            self.grpc = GrpcServer(app.pipeline, reuse_port=self.reuse_port)
            # The last start-up hook: after the lifespan made the Service ready, before uvicorn
            # opens the HTTP listener, so /readyz 200 means gRPC is being served too.
            app.litestar.on_startup.append(self.grpc.start)
        self.config.app = app
        # The protocol admits predictions (or refuses them) as their headers complete.
        self.config.http = guarded_protocol(
            connection_limits(self.settings), app.pipeline.arrive, app.backpressure
        )
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Not calling super(): uvicorn would re-raise the signal after shutdown, which turns a
        # clean drain into "killed by SIGTERM" (exit code -15) instead of 0.
        if self._signalled or self._loop is None or self.service is None:
            self.force_exit = self._signalled
            self.should_exit = True
            return
        self._signalled = True
        logger.info("signal %d: draining (a second signal forces exit)", sig)
        self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        assert self._loop is not None
        self._drain_task = self._loop.create_task(self._drain(), name="drain")

    async def _drain(self) -> None:
        assert self.service is not None
        if self.grpc is not None:
            await self.grpc.begin_drain()  # health NOT_SERVING; new calls meet the drain
        await self.service.drain(self.settings.drain_timeout_s, self.settings.drain_grace_s)
        self.should_exit = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Close the listener without resetting what the kernel already accepted.

        New handshakes are ignored first; connections already queued are accepted and, as the
        service is draining, their requests are answered 503 + ``Connection: close`` during
        the settle time. Then uvicorn's shutdown closes the listener and idle connections.
        """
        if self._signalled and not self.force_exit:
            filtered = [
                refuse_new_connections(sock.fileno())
                for server in self.servers
                for sock in server.sockets
            ]
            if all(filtered):
                await asyncio.sleep(LISTENER_SETTLE_S)
        if self.grpc is not None:  # drained: only the calls answering now are still running
            await self.grpc.stop(0 if self.force_exit else self.settings.drain_timeout_s)
        await super().shutdown(sockets)


def uvicorn_config(settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        # Placeholder: DrainingServer.serve() puts the real app object in before loading.
        app="serving.app:create_app",
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=guarded_protocol(connection_limits(settings)),
        timeout_keep_alive=math.ceil(settings.keep_alive_timeout_s),
        lifespan="on",
        log_level=settings.log_level,
        access_log=False,
        workers=settings.workers,
        timeout_graceful_shutdown=math.ceil(settings.drain_timeout_s),
        # HTTPS in the service itself (docs/security.md says when); None: plain HTTP.
        ssl_certfile=settings.ssl_certfile,
        ssl_keyfile=settings.ssl_keyfile,
    )


def connection_limits(settings: Settings) -> ConnectionLimits:
    return ConnectionLimits(
        max_header_bytes=settings.max_header_bytes,
        header_timeout_s=settings.header_timeout_s,
        body_timeout_s=settings.body_timeout_s,
        max_connections=settings.max_connections,
        max_body_bytes=settings.max_body_bytes,
    )


def run(settings: Settings) -> int:
    """Serve until a signal; the exit code (the CLI has prepared PROMETHEUS_MULTIPROC_DIR for
    workers > 1). Several workers run under serving.transport.supervisor, each a DrainingServer."""
    if settings.workers == 1:
        DrainingServer(uvicorn_config(settings), settings).run()
        return 0
    return Supervisor(settings, serve_worker).run()


def serve_worker(settings: Settings, listener: socket.socket) -> None:
    """One worker process of several (spawned by the supervisor): serve on ``listener``."""
    DrainingServer(uvicorn_config(settings), settings, reuse_port=True).run(sockets=[listener])
