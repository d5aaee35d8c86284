"""POST /v1/predict through Litestar's TestClient on the real tiny model: every status code."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from litestar.testing import TestClient
from PIL import Image

from serving.app import create_app
from serving.lifecycle import Service
from serving.settings import Settings
from serving.testing import AppClient
from tests.conftest import AppStarter
from tests.support.tiny_model import POISON_VALUE, synthetic_images
from tests.support.waiting import HANG_S, wait_until

from .conftest import Gated

Array = npt.NDArray[np.float32]
Reference = Callable[[Array], Array]


def assert_predictions(body: dict[str, Any], expected: Array) -> None:
    predictions = body["predictions"]
    assert len(predictions) == len(expected)
    got = np.array([p["probabilities"] for p in predictions], dtype=np.float32)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert [p["label"] for p in predictions] == expected.argmax(axis=1).tolist()
    np.testing.assert_allclose(
        [p["confidence"] for p in predictions], expected.max(axis=1), rtol=1e-5
    )
    assert body["model"] == {"name": "mnist", "version": "1"}


def service_of(client: AppClient) -> Service:
    service: Service = client.service
    return service


def png_bytes(pixels: npt.NDArray[np.uint8], mode: str = "L") -> bytes:
    image = Image.fromarray(pixels, mode="L").convert(mode)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


# ---------------------------------------------------------------------- 200
def test_json_flat_instances_match_onnxruntime(
    settings: Settings, reference: Reference, app_client: AppStarter
) -> None:
    pixels = synthetic_images(5, seed=1)
    with app_client(settings) as client:
        response = client.post("/v1/predict", json={"instances": pixels.tolist()})
    assert response.status_code == 200
    assert_predictions(response.json(), reference(pixels))


def test_json_nested_28x28_instances(
    settings: Settings, reference: Reference, app_client: AppStarter
) -> None:
    pixels = synthetic_images(3, seed=2)
    nested = pixels.reshape(3, 28, 28).tolist()
    with app_client(settings) as client:
        response = client.post("/v1/predict", json={"instances": nested})
    assert response.status_code == 200
    assert_predictions(response.json(), reference(pixels))


def test_binary_uint8_rows_are_scaled_by_255(
    settings: Settings, reference: Reference, app_client: AppStarter
) -> None:
    raw = np.random.default_rng(3).integers(0, 256, (4, 784), dtype=np.uint8)
    with app_client(settings) as client:
        response = client.post(
            "/v1/predict",
            content=raw.tobytes(),
            headers={"content-type": "application/octet-stream"},
        )
    assert response.status_code == 200
    assert_predictions(response.json(), reference(raw.astype(np.float32) / np.float32(255)))


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_png_image(
    settings: Settings, reference: Reference, mode: str, app_client: AppStarter
) -> None:
    raw = np.random.default_rng(4).integers(0, 256, (28, 28), dtype=np.uint8)
    with app_client(settings) as client:
        response = client.post(
            "/v1/predict", content=png_bytes(raw, mode), headers={"content-type": "image/png"}
        )
    assert response.status_code == 200
    expected = reference(raw.reshape(1, 784).astype(np.float32) / np.float32(255))
    assert_predictions(response.json(), expected)


# ---------------------------------------------------------------------- 4xx
def test_number_beyond_float_range_is_422_naming_its_place(
    settings: Settings, app_client: AppStarter
) -> None:
    body = (
        b'{"instances": [['
        + b"0.5," * 783
        + b"0.5], ["
        + b"0.5," * 10
        + b"1e999"
        + b",0.5" * 773
        + b"]]}"
    )
    with app_client(settings) as client:
        response = client.post(
            "/v1/predict", content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == 422, response.text
    assert "instances[1][10]" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("content", "content_type", "fragment"),
    [
        (b'{"instances": [[0.1,', "application/json", "malformed JSON"),
        (b"not a png", "image/png", "not a readable PNG image: not a PNG file"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 16, "image/png", "not a readable PNG image"),
    ],
)
def test_malformed_body_is_400(
    settings: Settings,
    content: bytes,
    content_type: str,
    fragment: str,
    app_client: AppStarter,
) -> None:
    with app_client(settings) as client:
        response = client.post(
            "/v1/predict", content=content, headers={"content-type": content_type}
        )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["status"] == 400
    assert fragment in error["message"]
    assert "0x" not in error["message"]  # no Python object reprs
    assert error["request_id"] == response.headers["x-request-id"]


def test_bad_timeout_header_is_400(settings: Settings, app_client: AppStarter) -> None:
    with app_client(settings) as client:
        response = client.post(
            "/v1/predict",
            json={"instances": synthetic_images(1).tolist()},
            headers={"x-request-timeout-ms": "soon"},
        )
    assert response.status_code == 400
    assert "X-Request-Timeout-Ms" in response.json()["error"]["message"]


def test_oversized_body_is_413(tiny_model_repository: Path, app_client: AppStarter) -> None:
    settings = Settings(model_repository=tiny_model_repository, max_body_bytes=4096)
    with app_client(settings) as client:
        response = client.post(
            "/v1/predict",
            content=bytes(784 * 6),
            headers={"content-type": "application/octet-stream"},
        )
    assert response.status_code == 413
    assert response.json()["error"]["status"] == 413


@pytest.mark.parametrize("content_type", ["text/plain", None])
def test_unsupported_content_type_is_415(
    settings: Settings, content_type: str | None, app_client: AppStarter
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    with app_client(settings) as client:
        response = client.post("/v1/predict", content=b"1,2,3", headers=headers)
    assert response.status_code == 415
    assert "unsupported content type" in response.json()["error"]["message"]


def _with(index: int, value: float, count: int = 4) -> list[list[float]]:
    instances: list[list[float]] = synthetic_images(count, seed=5).tolist()
    instances[index][10] = value
    return instances


def _short_at(index: int) -> list[list[float]]:
    instances: list[list[float]] = synthetic_images(4, seed=6).tolist()
    instances[index] = instances[index][:-1]
    return instances


@pytest.mark.parametrize(
    ("instances", "fragments"),
    [
        (_with(2, 1.5), ["instance 2", "pixel 10", "outside [0, 1]"]),
        (_with(3, -0.1), ["instance 3", "outside [0, 1]"]),
        (_with(1, 1e39), ["instance 1", "pixel 10", "outside [0, 1]"]),
        (_short_at(1), ["instance 1", "784"]),
        ([[0.5] * 784, [[0.5] * 28] * 27], ["instance 1", "28 rows"]),
        ([[0.5] * 784, ["a"] * 784], ["instance 1", "number"]),
        ([], ["1 to 256 instances", "got 0"]),
        ([[0.0] * 784] * 257, ["1 to 256 instances", "got 257"]),
    ],
)
def test_invalid_instances_are_422_naming_the_index(
    settings: Settings,
    instances: list[Any],
    fragments: list[str],
    app_client: AppStarter,
) -> None:
    with app_client(settings) as client:
        response = client.post("/v1/predict", json={"instances": instances})
    assert response.status_code == 422, response.text
    message = response.json()["error"]["message"]
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize(
    ("content", "content_type", "fragment"),
    [
        (bytes(783), "application/octet-stream", "N x 784"),
        (b"", "application/octet-stream", "N x 784"),
        (png_bytes(np.zeros((20, 28), dtype=np.uint8)), "image/png", "28x28"),
        (b'{"pixels": []}', "application/json", "instances"),
    ],
)
def test_invalid_binary_png_or_shape_is_422(
    settings: Settings,
    content: bytes,
    content_type: str,
    fragment: str,
    app_client: AppStarter,
) -> None:
    with app_client(settings) as client:
        response = client.post(
            "/v1/predict", content=content, headers={"content-type": content_type}
        )
    assert response.status_code == 422, response.text
    assert fragment in response.json()["error"]["message"]


# ---------------------------------------------------------------------- 5xx
def test_not_ready_is_503_with_retry_after(settings: Settings, app_client: AppStarter) -> None:
    client = app_client(settings)  # no `with`: the lifespan has not run
    response = client.post("/v1/predict", json={"instances": synthetic_images(1).tolist()})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert "not loaded" in response.json()["error"]["message"]
    assert client.get("/readyz").status_code == 503


def test_draining_is_503_and_readiness_flips(settings: Settings, app_client: AppStarter) -> None:
    with app_client(settings) as client:
        assert client.get("/readyz").status_code == 200
        service_of(client).begin_drain()
        response = client.post("/v1/predict", json={"instances": synthetic_images(1).tolist()})
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert "shutting down" in response.json()["error"]["message"]
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json() == {"status": "draining"}
        assert client.get("/healthz").status_code == 200


def _post_in_thread(
    client: TestClient[Any], results: list[Any], body: dict[str, Any], **kw: Any
) -> threading.Thread:
    thread = threading.Thread(
        target=lambda: results.append(client.post("/v1/predict", json=body, **kw))
    )
    thread.start()
    return thread


def test_queue_full_is_503_with_retry_after(tiny_model_repository: Path, gated: Gated) -> None:
    settings = Settings(
        model_repository=tiny_model_repository, max_instances=4, max_queue_size=4, inline_max_rows=0
    )
    app = create_app(settings, model_loader=gated.loader())
    with AppClient(app) as client:
        session, batcher = gated.session, service_of(client).batcher
        assert session is not None
        assert batcher is not None
        session.gate.clear()
        session.entered.clear()
        results: list[Any] = []
        threads = [_post_in_thread(client, results, {"instances": synthetic_images(1).tolist()})]
        wait_until(session.entered.is_set)  # the first batch is now held inside session.run
        threads.append(
            _post_in_thread(client, results, {"instances": synthetic_images(4).tolist()})
        )
        wait_until(lambda: batcher.queued_rows == 4)
        response = client.post("/v1/predict", json={"instances": synthetic_images(1).tolist()})
        session.gate.set()
        for thread in threads:
            thread.join(timeout=HANG_S)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert "queue full" in response.json()["error"]["message"]
    assert sorted(r.status_code for r in results) == [200, 200]


def test_deadline_passed_in_queue_is_504_and_never_computed(
    tiny_model_repository: Path, gated: Gated
) -> None:
    app = create_app(
        Settings(model_repository=tiny_model_repository, inline_max_rows=0),
        model_loader=gated.loader(),
    )
    marked = synthetic_images(1, seed=9)
    marked[0, 0] = 0.123
    with AppClient(app) as client:
        session = gated.session
        assert session is not None
        session.gate.clear()
        session.entered.clear()
        results: list[Any] = []
        thread = _post_in_thread(client, results, {"instances": synthetic_images(1).tolist()})
        wait_until(session.entered.is_set)
        response = client.post(
            "/v1/predict",
            json={"instances": marked.tolist()},
            headers={"x-request-timeout-ms": "50", "x-request-id": "late-1"},
        )
        session.gate.set()
        thread.join(timeout=HANG_S)
        after = client.post("/v1/predict", json={"instances": synthetic_images(1).tolist()})
    assert response.status_code == 504
    assert response.json()["error"]["request_id"] == "late-1"
    assert results[0].status_code == 200
    assert after.status_code == 200
    computed = np.concatenate(session.computed)
    assert not np.isclose(computed[:, 0], 0.123).any()  # the late request never reached ORT


def test_inference_failure_is_500_only_for_the_failing_request(
    poison_model_repository: Path, gated: Gated
) -> None:
    settings = Settings(model_repository=poison_model_repository, inline_max_rows=0)
    app = create_app(settings, model_loader=gated.loader())
    poisoned = synthetic_images(2, seed=7)
    poisoned[1, 0] = POISON_VALUE
    good = synthetic_images(3, seed=8)
    with AppClient(app) as client:
        session = gated.session
        assert session is not None
        session.gate.clear()
        session.entered.clear()
        results: list[Any] = []
        threads = [_post_in_thread(client, results, {"instances": synthetic_images(1).tolist()})]
        wait_until(session.entered.is_set)
        bad: list[Any] = []
        threads.append(
            _post_in_thread(
                client, bad, {"instances": poisoned.tolist()}, headers={"x-request-id": "p-1"}
            )
        )
        threads.append(_post_in_thread(client, results, {"instances": good.tolist()}))
        batcher = service_of(client).batcher
        assert batcher is not None
        wait_until(lambda: batcher.queued_rows == 5)  # both share the next batch
        session.gate.set()
        for thread in threads:
            thread.join(timeout=HANG_S)
        again = client.post("/v1/predict", json={"instances": good.tolist()})
    assert bad[0].status_code == 500
    assert bad[0].json()["error"]["request_id"] == "p-1"
    assert "inference failed" in bad[0].json()["error"]["message"]
    assert [r.status_code for r in results] == [200, 200]
    assert again.status_code == 200
