"""The test suite's way to run ``python -m serving`` on a loopback port (serving.testing's
harness, with the repository as the working directory)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import psutil

from serving.testing import SERVE, ServerProcess, free_port

REPO = Path(__file__).resolve().parents[2]
RunningServer = ServerProcess

__all__ = ["REPO", "RunningServer", "free_port", "listening_workers", "serving_process"]


@contextmanager
def serving_process(
    env: Mapping[str, str],
    log_path: Path,
    *,
    ready_timeout_s: float = 30.0,
    args: tuple[str, ...] = (),
) -> Iterator[ServerProcess]:
    """Start the service with ``env`` on top of the current environment, wait for /readyz.

    SERVING_PORT defaults to a free port. On exit the process is sent SIGTERM and reaped; its
    combined output is in ``log_path``.
    """
    port = int(env["SERVING_PORT"]) if "SERVING_PORT" in env else None
    with ServerProcess(
        log_path,
        args=(*SERVE, *args),
        env=env,
        port=port,
        ready_timeout_s=ready_timeout_s,
        cwd=REPO,
    ) as server:
        yield server


def listening_workers(supervisor_pid: int, count: int = 2) -> set[int]:
    """Pids of the workers listening, once ``count`` are (a worker listens when it is ready)."""
    deadline = time.monotonic() + 60
    while True:
        pids = set()
        for child in psutil.Process(supervisor_pid).children():
            with contextlib.suppress(psutil.NoSuchProcess):
                if any(c.status == psutil.CONN_LISTEN for c in child.net_connections("tcp")):
                    pids.add(child.pid)
        if len(pids) >= count or time.monotonic() > deadline:
            return pids
        time.sleep(0.1)
