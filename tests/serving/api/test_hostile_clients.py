"""The running app, fed hostile bodies and header values: only 4xx answers, each with the JSON
error body. Through Litestar's TestClient (fast) and once through a real server on loopback."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from serving.app import create_app
from serving.settings import Settings
from serving.testing import AppClient
from tests.conftest import ServerStarter

PROPERTY = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/octet-stream",
    "image/png",
    "text/plain",
    "",
]
header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)


@pytest.fixture(scope="module")
def client(tiny_model_repository: Path) -> Iterator[TestClient[Any]]:
    settings = Settings(model_repository=tiny_model_repository, metrics_enabled=False)
    with AppClient(create_app(settings)) as client:
        yield client


def assert_client_error(response: httpx.Response) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    error = response.json()["error"]
    assert error["status"] == response.status_code
    assert isinstance(error["message"], str)
    assert error["message"]


def assert_answered(response: httpx.Response) -> None:
    """A hostile request may still be valid by luck (200); never 5xx, always JSON."""
    if response.status_code == 200:
        assert response.json()["predictions"]
    else:
        assert_client_error(response)


@PROPERTY
@given(content_type=st.sampled_from(CONTENT_TYPES), body=st.binary(max_size=2048))
def test_arbitrary_bodies(client: TestClient[Any], content_type: str, body: bytes) -> None:
    response = client.post("/v1/predict", content=body, headers={"content-type": content_type})
    assert_answered(response)


@PROPERTY
@given(
    instances=st.recursive(
        st.integers() | st.floats(allow_nan=False) | st.text(max_size=4) | st.none(),
        lambda children: st.lists(children, max_size=5),
        max_leaves=30,
    )
)
def test_arbitrary_json_instances(client: TestClient[Any], instances: Any) -> None:
    body = json.dumps({"instances": instances}).encode()
    response = client.post(
        "/v1/predict", content=body, headers={"content-type": "application/json"}
    )
    assert_answered(response)


@PROPERTY
@given(timeout=header_text, content_type=header_text, extra=header_text)
def test_arbitrary_header_values(
    client: TestClient[Any], timeout: str, content_type: str, extra: str
) -> None:
    headers = {
        "x-request-timeout-ms": timeout,
        "content-type": content_type,
        "x-request-id": extra,
        "traceparent": extra,
    }
    response = client.post("/v1/predict", content=b"\x00" * 784, headers=headers)
    assert_answered(response)


@pytest.mark.parametrize(
    "body",
    [
        b'{"instances":[[' + b",".join([b"0"] * 783 + [b"9" * 400]) + b"]]}",
        b'{"instances":' + b"[" * 10_000 + b"]" * 10_000 + b"}",
        b'{"instances":[' + b'{"a":' * 5_000 + b"1" + b"}" * 5_000 + b"]}",
        b'{"instances":[["x"]], "tail": [1,}',
    ],
    ids=["400-digit-number", "deep-arrays", "deep-objects", "bad-tail"],
)
def test_known_crashers_are_400_with_the_error_body(client: TestClient[Any], body: bytes) -> None:
    response = client.post(
        "/v1/predict", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert_client_error(response)


def raw_exchange(port: int, request: bytes) -> bytes:
    """Send raw bytes on a fresh connection, read until the server closes or answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_real_server_answers_hostile_requests_with_4xx_json(
    serving_server: ServerStarter, tiny_model_repository: Path
) -> None:
    deep = b'{"instances":' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    bodies = [
        ("application/json", deep),
        ("application/json", b'{"instances":[[' + b"7" * 400 + b"]]}"),
        ("image/png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\xff" * 40),
        ("application/octet-stream", b"\x01" * 785),
        ("application/x-www-form-urlencoded", b"a=b"),
    ]
    with serving_server({"SERVING_MODEL_REPOSITORY": str(tiny_model_repository)}) as server:
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            for content_type, body in bodies:
                response = http.post(
                    "/v1/predict", content=body, headers={"content-type": content_type}
                )
                assert_client_error(response)
            bad_header = http.post(
                "/v1/predict",
                content=b"\x00" * 784,
                headers={
                    "content-type": "application/octet-stream",
                    "x-request-timeout-ms": "1e999",
                },
            )
            assert_client_error(bad_header)
        # Bytes no HTTP client would send: the server answers 400 (uvicorn) or closes.
        garbage = raw_exchange(server.port, b"POST /v1/predict HTTP/1.1\r\n\x00\x01\x02\r\n\r\n")
        assert not garbage or garbage.startswith(b"HTTP/1.1 4"), garbage[:200]
