"""Closed-loop load with ``wrk`` (C, epoll): the generator that does not saturate before the server.

Locust's FastHttpUser tops out near 6k requests/s on one core, about the HTTP ceiling of the
server under test on its own core, so it would measure itself. ``wrk`` with one thread and ``c``
keep-alive connections keeps ``c`` requests in flight, cycles through real MNIST bodies prepared
by a Lua script, and reports latency percentiles in microseconds from its HDR histogram.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

LUA = r"""
local bodies_path = os.getenv("BENCH_BODIES")
local content_type = os.getenv("BENCH_CONTENT_TYPE")
local path = os.getenv("BENCH_PATH")
local header_length = os.getenv("BENCH_HEADER_LENGTH")
local extra_headers = os.getenv("BENCH_HEADERS") or ""
local requests_list = {}
local n = 0
local counter = 0

init = function(args)
  local f = assert(io.open(bodies_path, "rb"))
  while true do
    local line = f:read("*l")
    if not line then break end
    local body = f:read(tonumber(line))
    n = n + 1
    local headers = {["Content-Type"] = content_type}
    if header_length ~= "" then headers["Inference-Header-Content-Length"] = header_length end
    for name, value in string.gmatch(extra_headers, "([^:\n]+): ([^\n]*)\n") do
      headers[name] = value
    end
    requests_list[n] = wrk.format("POST", path, headers, body)
  end
  f:close()
end

request = function()
  counter = counter % n + 1
  return requests_list[counter]
end

done = function(summary, latency, requests)
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
"""


@dataclass(frozen=True, slots=True)
class Target:
    """Where and how the bodies are posted: v1 predict, or v2 infer (binary: with the JSON
    header length, the same for every body of one digit); ``headers``: any other header on
    every request (e.g. ``Authorization``)."""

    content_type: str
    path: str = "/v1/predict"
    header_length: int | None = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class LoadResult:
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    generator_cpu_s: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def available() -> bool:
    return shutil.which("wrk") is not None


def write_bodies(bodies: list[bytes], path: Path) -> Path:
    """Length-prefixed bodies (``<n>\\n<n bytes>``) for the Lua script to load at init."""
    with path.open("wb") as out:
        for body in bodies:
            out.write(f"{len(body)}\n".encode())
            out.write(body)
    return path


def run(
    url: str,
    bodies_file: Path,
    target: Target | str,
    connections: int,
    seconds: float,
    cpu: int | None,
) -> LoadResult:
    """One closed-loop run of ``connections`` in-flight requests for ``seconds`` (rounded to
    whole seconds, wrk's unit; ``target``: a :class:`Target`, or the content type of a v1
    predict body)."""
    if isinstance(target, str):
        target = Target(target)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(LUA)
    whole = max(1, round(seconds))  # wrk takes whole seconds only
    cmd = [
        "wrk", "-t1", f"-c{connections}", f"-d{whole}s", "--timeout", "10s",
        "-s", script.name, url,
    ]  # fmt: skip
    if cpu is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", str(cpu), *cmd]
    env = {
        **os.environ,
        "BENCH_BODIES": str(bodies_file),
        "BENCH_CONTENT_TYPE": target.content_type,
        "BENCH_PATH": target.path,
        "BENCH_HEADER_LENGTH": "" if target.header_length is None else str(target.header_length),
        "BENCH_HEADERS": "".join(f"{name}: {value}\n" for name, value in target.headers),
    }
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        completed = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=whole + 30, check=False
        )
    finally:
        Path(script.name).unlink(missing_ok=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((ln for ln in completed.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(
            f"wrk failed ({completed.returncode}): {completed.stderr or completed.stdout}"
        )
    data = json.loads(line.removeprefix("WRKJSON "))
    errors = sum(data[k] for k in ("connect", "read", "write", "status", "timeout"))
    return LoadResult(
        requests=int(data["requests"]),
        seconds=data["duration_us"] / 1e6,
        errors=int(errors),
        p50_ms=data["p50_us"] / 1000,
        p95_ms=data["p95_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        generator_cpu_s=(after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
    )
