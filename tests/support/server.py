"""The test suite's way to run ``python -m serving`` on a loopback port (serving.testing's
harness, with the repository as the working directory)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from serving.testing import SERVE, ServerProcess, free_port

REPO = Path(__file__).resolve().parents[2]
RunningServer = ServerProcess

__all__ = ["REPO", "RunningServer", "free_port", "serving_process"]


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
