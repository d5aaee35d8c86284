"""The shipped HAProxy configuration (``deploy/haproxy/haproxy.cfg``) run on loopback ports in
front of a service, for the tests and the overload benchmark.

The file is run as shipped: only its environment variables change (ports, the service's
address, and whatever a test or run sets on purpose). ``HaproxyProcess`` starts it, waits until
its health check has marked the service UP, reads its Prometheus metrics (queue depth, server
state), and stops it.

``python -m benchmarks.proxy --models models`` re-derives ``PROXY_BACKEND_MAXCONN`` on the
machine it runs on: throughput of 1,000 back-to-back keep-alive clients (h2load) through the
proxy at each ``--maxconn``, the server on core 0, HAProxy and h2load on core 1, in rounds
(the VM's speed drifts: compare within a round). Take the smallest value near the best.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType

import psutil

from benchmarks import h2load
from benchmarks.openloop import percentile
from loadtest.data import binary_body, load_digits, mnist_dir
from serving.testing import ServerProcess, free_port, pinned

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "deploy" / "haproxy" / "haproxy.cfg"
BACKEND = "inference"
SERVER = "service"
_SAMPLE = re.compile(r"^(\w+)(\{[^}]*\})?\s+(\S+)$")


def binary() -> str | None:
    """The haproxy executable: on PATH, or Debian's /usr/sbin (off a normal user's PATH)."""
    found = shutil.which("haproxy")
    if found is None and os.access("/usr/sbin/haproxy", os.X_OK):
        found = "/usr/sbin/haproxy"
    return found


def defaults(config: Path = CONFIG) -> dict[str, str]:
    """The ``presetenv`` defaults of the configuration's knobs (``PROXY_*``)."""
    pattern = re.compile(r"^\s*presetenv\s+(\S+)\s+(\S+)\s*$")
    return {m[1]: m[2] for line in config.read_text().splitlines() if (m := pattern.match(line))}


def check(
    env: Mapping[str, str] | None = None, config: Path = CONFIG
) -> subprocess.CompletedProcess[str]:
    """``haproxy -c`` in zero-warning mode (``-dW``): a warning fails the check too."""
    exe = binary()
    if exe is None:
        raise FileNotFoundError("haproxy not found: apt-get install haproxy")
    return subprocess.run(
        [exe, "-dW", "-c", "-f", str(config)],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
    )


class HaproxyProcess:
    """``with HaproxyProcess(service_port, log_path, env={...}) as proxy:`` serves
    ``proxy.base_url``, forwarding to 127.0.0.1:``service_port``.

    ``env`` sets the configuration's other knobs (``PROXY_BACKEND_MAXCONN``, ...). ``cpu`` pins
    it to one core (taskset). On entry it waits until the service is UP behind it, unless
    ``wait_up`` is false.
    """

    def __init__(
        self,
        service_port: int,
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cpu: int | None = None,
        wait_up: bool = True,
        ready_timeout_s: float = 30.0,
        config: Path = CONFIG,
    ) -> None:
        exe = binary()
        if exe is None:
            raise FileNotFoundError("haproxy not found: apt-get install haproxy")
        self.port = free_port()
        self.metrics_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        self.log_path = log_path
        self.cmd = pinned([exe, "-f", str(config)], cpu)
        self.env = {
            **os.environ,
            "PROXY_BIND": f"127.0.0.1:{self.port}",
            "PROXY_METRICS_BIND": f"127.0.0.1:{self.metrics_port}",
            "PROXY_SERVICE": f"127.0.0.1:{service_port}",
            **(env or {}),
        }
        self.wait_up = wait_up
        self.ready_timeout_s = ready_timeout_s
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise RuntimeError("haproxy has not been started")
        return self._process

    def start(self) -> HaproxyProcess:
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        self.wait_until(lambda: self.metrics_or_none() is not None, "its metrics never answered")
        if self.wait_up:
            self.wait_until(lambda: self.server_state() == "UP", "the service never came UP")
        return self

    def wait_until(self, condition: Callable[[], bool], what: str) -> None:
        """Poll ``condition`` every 10 ms; the timeout only guards against a hang."""
        deadline = time.monotonic() + self.ready_timeout_s
        while not condition():
            if self.process.poll() is not None:
                raise RuntimeError(f"haproxy exited with {self.process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"haproxy: {what} within {self.ready_timeout_s} s\n{self.log()}")
            time.sleep(0.01)

    def metrics_or_none(self) -> dict[str, float] | None:
        try:
            return self.metrics()
        except OSError:
            return None

    def metrics(self) -> dict[str, float]:
        """Every sample of the exporter, keyed ``name{labels}`` as exposed."""
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            text = response.read().decode()
        samples = {}
        for line in text.splitlines():
            if (match := _SAMPLE.match(line)) is not None:
                samples[match[1] + (match[2] or "")] = float(match[3])
        return samples

    def server_state(self) -> str:
        """The service's state as the health check sees it: UP, DOWN, MAINT, ..."""
        prefix = f'haproxy_server_status{{proxy="{BACKEND}",server="{SERVER}",state="'
        states = [
            k[len(prefix) : -2]
            for k, v in self.metrics().items()
            if k.startswith(prefix) and v == 1
        ]
        return states[0] if states else "unknown"

    def queued(self) -> int:
        """Requests waiting in the proxy's queue for a slot in the service."""
        return int(self.metrics()[f'haproxy_backend_current_queue{{proxy="{BACKEND}"}}'])

    def cpu_seconds(self) -> float:
        times = psutil.Process(self.process.pid).cpu_times()
        return float(times.user + times.system)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout_s: float = 10.0) -> int:
        """SIGTERM (HAProxy's immediate stop: nothing is in flight when a test ends)."""
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

    def __enter__(self) -> HaproxyProcess:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description="Throughput through the proxy per maxconn")
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--maxconn", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--log-dir", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    if binary() is None or not h2load.available():
        print("needs haproxy and h2load: apt-get install haproxy nghttp2-client", file=sys.stderr)
        return 2
    body = binary_body(load_digits(mnist_dir(None), 1)[0])
    headers = {"Content-Type": "application/octet-stream"}
    env = {"SERVING_MODEL_REPOSITORY": str(args.models), "SERVING_TRACING_ENABLED": "false",
           "SERVING_LOG_LEVEL": "warning"}  # fmt: skip
    args.log_dir.mkdir(parents=True, exist_ok=True)
    server = ServerProcess(args.log_dir / "proxy-server.log", env=env, cpu=0, ready_timeout_s=120)
    print("| round | maxconn | 200/s | 200 p95 ms | statuses |\n| --- | --- | --- | --- | --- |")
    with server:
        for round_ in range(1, args.rounds + 1):
            for maxconn in args.maxconn:
                knobs = {"PROXY_BACKEND_MAXCONN": str(maxconn)}
                log = args.log_dir / "proxy-haproxy.log"
                with HaproxyProcess(server.port, log, env=knobs, cpu=1) as proxy:
                    target = proxy.base_url + "/v1/predict"
                    h2load.closed_loop(target, body, 64, 3000, headers, 1)  # warm connections
                    done = h2load.closed_loop(target, body, args.clients, args.requests, headers, 1)
                statuses = Counter(o.status for o in done.outcomes)
                ok = [o.latency_s for o in done.outcomes if o.status == 200]
                rate = statuses[200] / done.elapsed_s
                p95 = percentile(ok, 95) * 1000
                print(f"| {round_} | {maxconn} | {rate:.0f} | {p95:.0f} | {dict(statuses)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
