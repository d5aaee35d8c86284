"""The two ways to run the service for tests, load tests and benchmarks, shipped with the package
(as ``litestar.testing`` is) so that every caller starts and stops it the same way:

* :class:`ServerProcess`: ``python -m serving`` on a loopback port: start, wait for ``/readyz``,
  stop with SIGTERM (the real transport: uvicorn, the protocol, workers);
* :class:`AppClient`: the app in-process under Litestar's test client (no sockets).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil
from litestar.testing import TestClient

from serving.app import ServiceApp
from serving.lifecycle import Service

SERVE = ("-m", "serving")


def free_port() -> int:
    """A TCP port nothing listens on right now (the kernel's pick on 127.0.0.1)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pinned(cmd: Sequence[str], cpu: int | None) -> list[str]:
    """``cmd`` run on one core with taskset, when asked and available."""
    if cpu is None or shutil.which("taskset") is None:
        return list(cmd)
    return ["taskset", "-c", str(cpu), *cmd]


class ServerProcess:
    """``with ServerProcess(log_path, env={...}) as server:`` serves ``server.base_url``.

    ``args`` follow the Python interpreter (default ``-m serving``). ``SERVING_HOST`` and
    ``SERVING_PORT`` are set for the child (a free port unless ``port`` is given); ``env`` goes
    on top of the current environment. stdout and stderr go to ``log_path``. gRPC is off unless
    ``env`` sets ``SERVING_GRPC_PORT``. ``ca_file``: the server speaks HTTPS with a certificate
    this CA signed (SERVING_SSL_* in ``env`` or ``args``); ``base_url`` is then ``https://`` and
    ``/readyz`` is polled over TLS, verified with the CA.
    """

    def __init__(
        self,
        log_path: Path,
        *,
        args: Sequence[str] = SERVE,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        cpu: int | None = None,
        ready_timeout_s: float = 60.0,
        cwd: Path | None = None,
        ca_file: Path | None = None,
    ) -> None:
        self.port = port if port is not None else free_port()
        self.ca_file = ca_file
        scheme = "http" if ca_file is None else "https"
        self.base_url = f"{scheme}://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.cmd = pinned([sys.executable, *args], cpu)
        self.env = {
            # Stopping is part of every test and benchmark: a short drain window, unless asked.
            "SERVING_DRAIN_GRACE_S": "0.2",
            # gRPC off unless asked: its default port, 8001, would be shared by every server.
            "SERVING_GRPC_PORT": "0",
            **os.environ,
            "SERVING_HOST": "127.0.0.1",
            "SERVING_PORT": str(self.port),
            **(env or {}),
        }
        self.ready_timeout_s = ready_timeout_s
        self.cwd = cwd
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise RuntimeError("the server process has not been started")
        return self._process

    def start(self) -> ServerProcess:
        """Start the process and return once ``/readyz`` answers 200 (raises if it never does)."""
        with self.log_path.open("ab") as log:
            process = subprocess.Popen(
                self.cmd, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        self._process = process
        deadline = time.monotonic() + self.ready_timeout_s
        context = None if self.ca_file is None else ssl.create_default_context(cafile=self.ca_file)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"server exited with {process.returncode} before ready:\n{self.log()}"
                )
            try:
                url = f"{self.base_url}/readyz"
                with urllib.request.urlopen(url, timeout=1, context=context) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server not ready after {self.ready_timeout_s} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, wait (kill after ``timeout_s``); the exit code."""
        process = self._process
        if process is None:
            return 0
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def cpu_seconds(self) -> float:
        """User + system CPU of the process and its children (e.g. uvicorn workers) so far."""
        assert self.process is not None
        return cpu_seconds_of(self.process.pid)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class AppClient(TestClient[ServiceApp]):
    """Litestar's test client on the real app, in-process: ``with AppClient(create_app(s)) as
    client:`` runs the lifespan (model load, warm-up, drain) and keeps the app at ``client.served``
    (``client.app`` is the test client's own wrapper of it)."""

    def __init__(self, app: ServiceApp, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.served = app

    @property
    def service(self) -> Service:
        return self.served.service


def cpu_seconds_of(pid: int) -> float:
    """User + system CPU of process ``pid`` and its children so far (``/proc/<pid>/stat``, via
    psutil); children that end while being read are skipped."""
    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total
