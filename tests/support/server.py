"""Start ``python -m serving`` as a real process on a loopback port (for end-to-end tests).

General on purpose: settings go in as environment variables, so other suites (observability,
load tests) reuse it with their own ``SERVING_*`` / ``OTEL_*`` values.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RunningServer:
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def serving_process(
    env: Mapping[str, str],
    log_path: Path,
    *,
    ready_timeout_s: float = 30.0,
    args: tuple[str, ...] = (),
) -> Iterator[RunningServer]:
    """Start the service with ``env`` on top of the current environment, wait for /readyz.

    SERVING_HOST defaults to 127.0.0.1 and SERVING_PORT to a free port. On exit the process is
    sent SIGTERM (if still running) and reaped; its combined output is in ``log_path``.
    """
    full_env = {**os.environ, "SERVING_HOST": "127.0.0.1", **env}
    full_env.setdefault("SERVING_PORT", str(free_port()))
    base_url = f"http://127.0.0.1:{full_env['SERVING_PORT']}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "serving", *args],
            cwd=REPO,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = RunningServer(base_url, process, log_path)
    try:
        _wait_ready(server, ready_timeout_s)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_ready(server: RunningServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"server exited with {server.process.returncode} before ready:\n{server.log()}"
            )
        try:
            if httpx.get(f"{server.base_url}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"server not ready after {timeout_s} s:\n{server.log()}")
