"""The official gRPC clients against ``python -m serving`` (1 and 2 workers): ``tritonclient.grpc``
sync and aio for health, metadata, infer in every form and the errors; grpcio's health stub and
server reflection; the limits. Gated and lifecycle cases are in test_lifecycle.py."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import psutil
import pytest
import tritonclient.grpc as triton
import tritonclient.grpc.aio as triton_aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from tritonclient.grpc import service_pb2 as triton_pb
from tritonclient.grpc import service_pb2_grpc as triton_grpc
from tritonclient.utils import InferenceServerException

from tests.support.server import RunningServer, free_port, serving_process
from tests.support.tiny_model import synthetic_images

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
Array = npt.NDArray[np.float32]
Reference = Callable[[Array], Array]


def grpc_listeners(supervisor_pid: int, port: int, count: int, timeout_s: float = 60) -> set[int]:
    """Pids listening on ``port`` (the server or its workers), once ``count`` are."""
    deadline = time.monotonic() + timeout_s
    while True:
        root = psutil.Process(supervisor_pid)
        pids = set()
        for process in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                for conn in process.net_connections("tcp"):
                    if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port:
                        pids.add(process.pid)
        if len(pids) >= count or time.monotonic() > deadline:
            return pids
        time.sleep(0.05)


class GrpcServer:
    def __init__(self, running: RunningServer, port: int, workers: int) -> None:
        self.running = running
        self.url = f"127.0.0.1:{port}"
        self.port = port
        self.workers = workers


@pytest.fixture(scope="module", params=[1, 2], ids=["1-worker", "2-workers"])
def server(
    request: pytest.FixtureRequest,
    tiny_model_repository: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GrpcServer]:
    workers: int = request.param
    port = free_port()
    env = {
        "SERVING_MODEL_REPOSITORY": str(tiny_model_repository),
        "SERVING_GRPC_PORT": str(port),
        "SERVING_WORKERS": str(workers),
        "SERVING_MAX_BODY_BYTES": str(1024 * 1024),
    }
    log = tmp_path_factory.mktemp("grpc") / f"server-{workers}.log"
    with serving_process(env, log) as running:
        # /readyz answers once one worker is ready; every worker binds gRPC when it is.
        assert len(grpc_listeners(running.process.pid, port, workers)) == workers
        yield GrpcServer(running, port, workers)


@pytest.fixture
def client(server: GrpcServer) -> Iterator[triton.InferenceServerClient]:
    sync = triton.InferenceServerClient(server.url)
    yield sync
    sync.close()


@pytest.fixture(scope="session")
def reference(tiny_model_repository: Path) -> Reference:
    """onnxruntime run directly on the same model file: the expected answers."""
    session = ort.InferenceSession(str(tiny_model_repository / "mnist" / "1" / "model.onnx"))

    def run(pixels: Array) -> Array:
        result: Array = session.run(["probabilities"], {"pixels": pixels})[0]
        return result

    return run


def pixels_input(pixels: npt.NDArray[Any], datatype: str = "FP32") -> triton.InferInput:
    tensor = triton.InferInput("pixels", list(pixels.shape), datatype)
    tensor.set_data_from_numpy(pixels)
    return tensor


def test_health_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("mnist")
    assert client.is_model_ready("mnist", "1")
    assert not client.is_model_ready("mnist", "2")
    assert not client.is_model_ready("other")
    server = client.get_server_metadata(as_json=True)
    assert server["name"] == "mnist-inference"
    assert server["extensions"] == ["binary_tensor_data", "model_repository"]
    for version in ("", "1"):
        model = client.get_model_metadata("mnist", version)
        assert (model.name, list(model.versions), model.platform) == ("mnist", ["1"], "onnx_onnxv1")
        assert [(t.name, t.datatype, list(t.shape)) for t in model.inputs] == [
            ("pixels", "FP32", [-1, 784])
        ]
        assert [(t.name, t.datatype, list(t.shape)) for t in model.outputs] == [
            ("probabilities", "FP32", [-1, 10]),
            ("label", "INT64", [-1]),
        ]


def test_infer_raw_batch_of_8_fp32_and_uint8(
    client: triton.InferenceServerClient, reference: Reference
) -> None:
    pixels = synthetic_images(8, seed=21)
    result = client.infer("mnist", [pixels_input(pixels)], request_id="req-8")
    expected = reference(pixels)
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, rtol=1e-5, atol=1e-6)
    assert result.as_numpy("label").tolist() == expected.argmax(axis=1).tolist()
    response = result.get_response()
    assert (response.id, response.model_name, response.model_version) == ("req-8", "mnist", "1")
    ids = response.parameters["prediction_ids"].string_param.split(",")
    assert len(set(ids)) == len(ids) == 8

    raw = np.random.default_rng(22).integers(0, 256, (3, 784), dtype=np.uint8)
    outputs = [triton.InferRequestedOutput("label")]
    result = client.infer("mnist", [pixels_input(raw, "UINT8")], outputs=outputs)
    assert [o.name for o in result.get_response().outputs] == ["label"]
    expected_labels = reference(raw.astype(np.float32) / np.float32(255)).argmax(axis=1)
    assert result.as_numpy("label").tolist() == expected_labels.tolist()


@pytest.mark.parametrize("datatype", ["FP32", "UINT8"])
def test_infer_with_typed_contents_answers_in_contents(
    server: GrpcServer, reference: Reference, datatype: str
) -> None:
    """The "JSON-style" form: data in InferTensorContents, built with tritonclient's own
    messages and stub (its InferInput always sends raw bytes)."""
    raw = np.random.default_rng(23).integers(0, 256, (2, 784), dtype=np.uint8)
    pixels = raw.astype(np.float32) / np.float32(255)
    request = triton_pb.ModelInferRequest(model_name="mnist", id="c-1")
    tensor = request.inputs.add(name="pixels", datatype=datatype, shape=[2, 784])
    if datatype == "FP32":
        tensor.contents.fp32_contents.extend(pixels.ravel().tolist())
    else:
        tensor.contents.uint_contents.extend(raw.ravel().tolist())
    with grpc.insecure_channel(server.url) as channel:
        response = triton_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)
    assert not response.raw_output_contents
    by_name = {output.name: output for output in response.outputs}
    probabilities = np.array(by_name["probabilities"].contents.fp32_contents, np.float32)
    np.testing.assert_allclose(
        probabilities.reshape(2, 10), reference(pixels), rtol=1e-5, atol=1e-6
    )
    assert list(by_name["label"].contents.int64_contents) == reference(pixels).argmax(1).tolist()


def _bad_input(name: str, datatype: str, pixels: npt.NDArray[Any]) -> triton.InferInput:
    tensor = triton.InferInput(name, list(pixels.shape), datatype)
    tensor.set_data_from_numpy(pixels)
    return tensor


X = synthetic_images(2, seed=24)
ERRORS: list[tuple[str, Callable[[triton.InferenceServerClient], object], str, str]] = [
    (
        "shape",
        lambda c: c.infer("mnist", [pixels_input(X.reshape(2, 28, 28))]),
        "INVALID_ARGUMENT",
        "expected [n, 784]",
    ),
    (
        "datatype",
        lambda c: c.infer("mnist", [_bad_input("pixels", "FP64", X.astype(np.float64))]),
        "INVALID_ARGUMENT",
        "datatype 'FP64'",
    ),
    (
        "input-name",
        lambda c: c.infer("mnist", [_bad_input("image", "FP32", X)]),
        "INVALID_ARGUMENT",
        "unknown input 'image'",
    ),
    (
        "values",
        lambda c: c.infer("mnist", [pixels_input(X * 3)]),
        "INVALID_ARGUMENT",
        "outside [0, 1]",
    ),
    (
        "output-name",
        lambda c: c.infer(
            "mnist", [pixels_input(X)], outputs=[triton.InferRequestedOutput("logits")]
        ),
        "INVALID_ARGUMENT",
        "unknown output 'logits'",
    ),
    (
        "classification",
        lambda c: c.infer(
            "mnist",
            [pixels_input(X)],
            outputs=[triton.InferRequestedOutput("probabilities", class_count=3)],
        ),
        "INVALID_ARGUMENT",
        "'classification' is not supported",
    ),
    (
        "model",
        lambda c: c.infer("other", [pixels_input(X)]),
        "NOT_FOUND",
        "unknown model 'other'",
    ),
    (
        "version",
        lambda c: c.infer("mnist", [pixels_input(X)], model_version="3"),
        "NOT_FOUND",
        "no served version '3'",
    ),
    ("metadata-model", lambda c: c.get_model_metadata("other"), "NOT_FOUND", "unknown model"),
    (
        "metadata-version",
        lambda c: c.get_model_metadata("mnist", "3"),
        "NOT_FOUND",
        "no served version '3'",
    ),
    (
        "message-size",  # 400 rows of FP32: 1.25 MB, over max_body_bytes (1 MiB here)
        lambda c: c.infer("mnist", [pixels_input(synthetic_images(400))]),
        "RESOURCE_EXHAUSTED",
        "",
    ),
    ("config", lambda c: c.get_model_config("mnist"), "UNIMPLEMENTED", "ModelMetadata describes"),
    ("statistics", lambda c: c.get_inference_statistics("mnist"), "UNIMPLEMENTED", "/metrics"),
    (
        "shared-memory",
        lambda c: c.register_system_shared_memory("r", "/k", 16),
        "UNIMPLEMENTED",
        "shared memory is not supported",
    ),
    (
        "cuda-shared-memory",
        lambda c: c.get_cuda_shared_memory_status(),
        "UNIMPLEMENTED",
        "shared memory is not supported",
    ),
    ("trace", lambda c: c.get_trace_settings(), "UNIMPLEMENTED", "OTEL_"),
    ("log", lambda c: c.get_log_settings(), "UNIMPLEMENTED", "log_level setting"),
]


@pytest.mark.parametrize(
    ("call", "code", "fragment"),
    [case[1:] for case in ERRORS],
    ids=[case[0] for case in ERRORS],
)
def test_errors_reach_the_client_as_status_and_message(
    client: triton.InferenceServerClient,
    call: Callable[[triton.InferenceServerClient], object],
    code: str,
    fragment: str,
) -> None:
    with pytest.raises(InferenceServerException) as raised:
        call(client)
    assert raised.value.status() == f"StatusCode.{code}"
    assert fragment in (raised.value.message() or "")


def test_streaming_is_unimplemented_with_a_reason(client: triton.InferenceServerClient) -> None:
    errors: list[InferenceServerException] = []
    client.start_stream(callback=lambda result, error: errors.append(error))
    try:
        # The server refuses the stream without reading it: the refusal may already have ended
        # the stream when the request is enqueued, which tritonclient then refuses too.
        with contextlib.suppress(InferenceServerException):
            client.async_stream_infer("mnist", [pixels_input(X)])
    finally:
        client.stop_stream()  # waits for the stream to end: its error has been delivered
    assert [error.status() for error in errors] == ["StatusCode.UNIMPLEMENTED"]
    assert "send each request with ModelInfer" in (errors[0].message() or "")


def test_aio_client_concurrent_calls(server: GrpcServer, reference: Reference) -> None:
    pixels = synthetic_images(64, seed=25)
    expected = reference(pixels).argmax(axis=1).tolist()

    async def run() -> list[int]:
        aio = triton_aio.InferenceServerClient(server.url)
        try:
            assert await aio.is_server_live()
            assert await aio.is_server_ready()
            assert await aio.is_model_ready("mnist")
            metadata = await aio.get_model_metadata("mnist", as_json=True)
            assert metadata["versions"] == ["1"]

            async def one(row: int) -> int:
                tensor = triton_aio.InferInput("pixels", [1, 784], "FP32")
                tensor.set_data_from_numpy(pixels[row : row + 1])
                result = await aio.infer("mnist", [tensor], client_timeout=30)
                return int(result.as_numpy("label")[0])

            return await asyncio.gather(*(one(row) for row in range(64)))
        finally:
            await aio.close()

    assert asyncio.run(run()) == expected


def test_grpc_health_probe(server: GrpcServer) -> None:
    """What grpc_health_probe (and Kubernetes' grpc probe) does: Check on the health service."""
    with grpc.insecure_channel(server.url) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)  # its typeshed stub omits the methods
        for name in ("", "inference.GRPCInferenceService"):
            response = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)
            assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_and_describes_the_service(server: GrpcServer) -> None:
    list_services = reflection_pb2.ServerReflectionRequest(list_services="")
    symbol = reflection_pb2.ServerReflectionRequest(
        file_containing_symbol="inference.GRPCInferenceService"
    )
    with grpc.insecure_channel(server.url) as channel:
        stub: Any = reflection_pb2_grpc.ServerReflectionStub(channel)
        listed, described = stub.ServerReflectionInfo(iter([list_services, symbol]), timeout=10)
    names = {service.name for service in listed.list_services_response.service}
    assert {
        "inference.GRPCInferenceService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names
    from google.protobuf import descriptor_pb2

    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in described.file_descriptor_response.file_descriptor_proto
    ]
    methods = {m.name for f in files for s in f.service for m in s.method}
    assert {"ModelInfer", "ModelMetadata", "RepositoryModelLoad"} <= methods


def test_every_worker_serves_grpc_on_the_port(server: GrpcServer) -> None:
    listeners = grpc_listeners(server.running.process.pid, server.port, server.workers)
    if server.workers == 1:
        assert listeners == {server.running.process.pid}
    else:  # each worker its own SO_REUSEPORT listener, the supervisor none
        assert len(listeners) == 2
        assert server.running.process.pid not in listeners
