"""``workers > 1``: one DrainingServer per spawned process, each on its own SO_REUSEPORT socket.

Why not uvicorn's ``Multiprocess``: it runs a plain ``uvicorn.Server`` in each worker, so workers
stop accepting at the first signal (no drain window), and they share one listening socket, where
the kernel wakes whichever worker is idle first and keep-alive connections pile onto one worker.
Here every worker binds its own listener on the same port (the kernel hashes new connections
across them) and drains exactly like a single process. The supervisor forwards SIGTERM/SIGINT
to every worker, restarts a worker that dies while serving, and exits 0 when all drained.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import socket
from collections.abc import Callable
from multiprocessing.context import SpawnProcess
from types import FrameType
from typing import Any

from serving.settings import Settings
from serving.transport.listener import bind_listener

logger = logging.getLogger(__name__)

#: uvicorn's exit code when the lifespan start-up (model load) failed: restarting won't help.
STARTUP_FAILURE = 3
_PR_SET_PDEATHSIG = 1
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


WorkerTarget = Callable[[Settings, socket.socket], None]


def _worker(target: WorkerTarget, values: dict[str, Any], port: int, log_level: int) -> None:
    """Entry point of a spawned worker: its own listener, then ``target`` serves on it."""
    # Own process group: a terminal's Ctrl-C reaches the supervisor only, which forwards it
    # once (a second signal would force-exit the worker instead of draining it).
    os.setpgid(0, 0)
    _exit_with_parent()
    logging.basicConfig(level=log_level, format=_LOG_FORMAT)
    settings = Settings(**{**values, "port": port, "workers": 1})
    target(settings, bind_listener(settings.host, port, reuse_port=True))


def _exit_with_parent() -> None:
    """Linux: SIGTERM this worker (so it drains) if the supervisor dies without forwarding."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Supervisor:
    """Starts ``settings.workers`` worker processes and shepherds them until they drained."""

    def __init__(self, settings: Settings, worker: WorkerTarget) -> None:
        """``worker(settings, listener)`` serves in each spawned process (module-level, so that
        spawn can import it); ``listener`` is that worker's bound SO_REUSEPORT socket."""
        self.settings = settings
        self._target = worker
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[SpawnProcess] = []
        self._stopping = False
        self._signals = 0
        self._failed = False
        self._port = settings.port

    def run(self) -> int:
        """Serve until signalled; 0 when every worker exited cleanly."""
        # Holding the port bound (never listening) reserves it and resolves port 0 once.
        reservation = bind_listener(self.settings.host, self.settings.port, reuse_port=True)
        self._port = reservation.getsockname()[1]
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            self._workers = [self._spawn() for _ in range(self.settings.workers)]
            logger.info(
                "supervisor %d: %d workers on port %d (SO_REUSEPORT)",
                os.getpid(),
                len(self._workers),
                self._port,
            )
            return self._watch()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            reservation.close()

    def _spawn(self) -> SpawnProcess:
        values = self.settings.model_dump(exclude_none=True)
        level = logging.getLogger().getEffectiveLevel()
        process = self._context.Process(
            target=_worker,
            args=(self._target, values, self._port, level),
            name="serving-worker",
        )
        process.start()
        return process

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        self._stopping = True
        self._signals += 1
        logger.info("supervisor: signal %d, forwarding to %d workers", sig, len(self._workers))
        for process in self._workers:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGTERM)

    def _watch(self) -> int:
        while True:
            for index, process in enumerate(self._workers):
                process.join(timeout=0.2)
                if process.exitcode == STARTUP_FAILURE and not self._stopping:
                    logger.error("worker %s failed to start: stopping", process.pid)
                    self._on_signal(signal.SIGTERM, None)
                    self._failed = True
                elif process.exitcode is not None and not self._stopping:
                    logger.error(
                        "worker %s exited with %s while serving: restarting",
                        process.pid,
                        process.exitcode,
                    )
                    self._workers[index] = self._spawn()
            if self._stopping and all(p.exitcode is not None for p in self._workers):
                codes = [p.exitcode for p in self._workers]
                logger.info("supervisor: workers exited with %s", codes)
                return 0 if not self._failed and all(code == 0 for code in codes) else 1
