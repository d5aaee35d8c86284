"""Server processes under test: started pinned to a core, ready-checked, CPU-metered, stopped.

CPU per request is read from ``/proc/<pid>/stat`` (psutil ``cpu_times``: user + system) over the
measured window only, divided by the requests completed in it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import TracebackType

import psutil


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pinned(cmd: list[str], cpu: int | None) -> list[str]:
    if cpu is None or shutil.which("taskset") is None:
        return cmd
    return ["taskset", "-c", str(cpu), *cmd]


class Server:
    """``with Server(cmd, env, port, cpu, log) as server:`` a process serving ``server.url``."""

    def __init__(
        self, args: list[str], env: dict[str, str], port: int, cpu: int | None, log: Path
    ) -> None:
        self.cmd = pinned([sys.executable, *args], cpu)
        self.env = {**os.environ, **env}
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}); see {self.log}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        self.__exit__(None, None, None)
        raise RuntimeError(f"server not ready in 120 s; see {self.log}")

    def cpu_seconds(self) -> float:
        """User + system CPU of the server process (and any children, e.g. uvicorn workers)."""
        assert self.proc is not None
        process = psutil.Process(self.proc.pid)
        total = 0.0
        for p in [process, *process.children(recursive=True)]:
            try:
                times = p.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
