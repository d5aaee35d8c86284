"""gRPC through h2load (benchmarks/h2sweep.py) against a real server with gRPC on: a real client
first, then h2load's calls; every call is accounted for, failed calls (which h2load sees as
HTTP 200) are found from the response bytes, and the server's own metrics agree."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest

from benchmarks import h2load, h2sweep
from serving.testing import ServerProcess, free_port
from tests.support.server import serving_process
from tests.support.tiny_model import synthetic_images

pytestmark = pytest.mark.e2e

GRPC_200 = re.compile(
    r'inference_http_requests_total\{[^}]*protocol="grpc"[^}]*status="(\d+)"[^}]*\} (\S+)'
)


@pytest.fixture(scope="module")
def grpc_server(
    tiny_model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("h2sweep") / "server.log"
    env = {
        "SERVING_MODEL_REPOSITORY": str(tiny_model_repository),
        "SERVING_GRPC_PORT": str(free_port()),
        "SERVING_METRICS_ENABLED": "true",
    }
    with serving_process(env, log) as server:
        yield server


def grpc_calls(server: ServerProcess) -> dict[str, float]:
    """The server's count of ModelInfer calls by status (scraped: the scrape flushes)."""
    text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
    counts: dict[str, float] = {}
    for status, value in GRPC_200.findall(text):
        counts[status] = counts.get(status, 0.0) + float(value)
    return counts


def message(model: str = "mnist") -> bytes:
    pixels = np.rint(synthetic_images(1, seed=5) * 255).astype(np.uint8)
    request = h2sweep.infer_request(pixels)
    request.model_name = model
    return request.SerializeToString()


def test_calls_are_verified_counted_and_agree_with_the_server(grpc_server: ServerProcess) -> None:
    port = grpc_server.env["SERVING_GRPC_PORT"]
    verified = h2sweep.verify(f"127.0.0.1:{port}", message())
    assert len(verified.labels) == 1
    before = grpc_calls(grpc_server).get("200", 0.0)
    url = f"http://127.0.0.1:{port}{h2sweep.MODEL_INFER}"
    for clients, streams in ((4, 1), (1, 8)):
        shape = h2sweep.Shape(
            url, message(), grpc=True, clients=clients, streams=streams,
            response_frame_bytes=verified.response_frame_bytes,
        )  # fmt: skip
        done, generator_cpu_s = shape.run(120, None)
        load = h2sweep.load_result(shape, done, generator_cpu_s)
        assert (load.requests, load.errors) == (120, 0)
        assert done.data_bytes == 120 * verified.response_frame_bytes
        assert 0 < load.p50_ms <= load.p95_ms <= load.p99_ms
        assert done.measured_s > 0
    after = grpc_calls(grpc_server).get("200", 0.0)
    assert after - before == 240  # the server answered every call OK, as h2load counted


def test_failed_calls_are_counted_although_h2load_sees_200(grpc_server: ServerProcess) -> None:
    port = grpc_server.env["SERVING_GRPC_PORT"]
    good = h2sweep.verify(f"127.0.0.1:{port}", message())
    with pytest.raises(grpc.RpcError) as refused:
        h2sweep.verify(f"127.0.0.1:{port}", message(model="nope"))
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    shape = h2sweep.Shape(
        f"http://127.0.0.1:{port}{h2sweep.MODEL_INFER}", message(model="nope"), grpc=True,
        clients=2, response_frame_bytes=good.response_frame_bytes,
    )  # fmt: skip
    done, cpu_s = shape.run(30, None)
    assert {o.status for o in done.outcomes} == {200}  # HTTP's view: all fine
    assert h2load.grpc_failures(done, good.response_frame_bytes) == 30
    load = h2sweep.load_result(shape, done, cpu_s)
    assert (load.requests, load.errors) == (0, 30)


def test_http1_posts_through_the_same_generator(grpc_server: ServerProcess) -> None:
    body = np.rint(synthetic_images(1, seed=6) * 255).astype(np.uint8).tobytes()
    shape = h2sweep.Shape(
        grpc_server.base_url + "/v1/predict", body, grpc=False, clients=4,
        headers=(("content-type", "application/octet-stream"),),
    )  # fmt: skip
    load = h2sweep.measure(shape, 0.3, None)
    assert load.errors == 0
    assert load.requests >= h2sweep.MIN_REQUESTS
