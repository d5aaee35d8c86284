"""Health, readiness, model metadata, OpenAPI, and X-Request-ID on a prediction (the rule on
every response: test_request_id.py; the one before_send hook: test_response_hooks.py)."""

from __future__ import annotations

import re

from model_repository import sha256_file
from serving.settings import Settings
from tests.conftest import AppStarter
from tests.support.tiny_model import synthetic_images


def test_health_and_readiness(settings: Settings, app_client: AppStarter) -> None:
    with app_client(settings) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}


def test_models_describes_the_served_version(settings: Settings, app_client: AppStarter) -> None:
    with app_client(settings) as client:
        response = client.get("/v1/models")
    assert response.status_code == 200
    (model,) = response.json()["models"]
    served = settings.model_repository / "mnist" / "1" / "model.onnx"
    assert model["name"] == "mnist"
    assert model["version"] == "1"
    assert model["variant"] == "fp32"
    assert model["sha256"] == sha256_file(served)
    assert model["inputs"] == [{"name": "pixels", "dtype": "float32", "shape": ["batch", 784]}]
    assert model["outputs"][0]["name"] == "probabilities"
    assert model["test_accuracy"] == {"fp32": 0.1, "int8": 0.1}
    assert model["batching"]["max_batch_size"] == settings.max_batch_size


def test_int8_variant_is_served_when_configured(settings: Settings, app_client: AppStarter) -> None:
    int8 = settings.model_copy(update={"model_variant": "int8"})
    with app_client(int8) as client:
        assert client.get("/v1/models").json()["models"][0]["variant"] == "int8"
        response = client.post("/v1/predict", json={"instances": synthetic_images(2).tolist()})
    assert response.status_code == 200


def test_openapi_documents_predict_bodies(settings: Settings, app_client: AppStarter) -> None:
    with app_client(settings) as client:
        schema = client.get("/schema/openapi.json").json()
    operation = schema["paths"]["/v1/predict"]["post"]
    assert set(operation["requestBody"]["content"]) == {
        "application/json",
        "application/octet-stream",
        "image/png",
    }
    assert {"200", "400", "413", "415", "422", "500", "503", "504"} <= set(operation["responses"])
    assert "PredictResponse" in schema["components"]["schemas"]


def test_openapi_describes_every_json_body_as_an_object(
    settings: Settings, app_client: AppStarter
) -> None:
    """Health, readiness and models answer JSON objects: the document must not say string."""
    with app_client(settings) as client:
        schema = client.get("/schema/openapi.json").json()
    refs = {
        path: schema["paths"][path]["get"]["responses"]["200"]["content"]["application/json"][
            "schema"
        ]["$ref"]
        for path in ("/healthz", "/readyz", "/v1/models")
    }
    for path, ref in refs.items():
        component = schema["components"]["schemas"][ref.rsplit("/", 1)[-1]]
        assert component["type"] == "object", path


def test_schema_page_loads_its_assets_from_the_service(
    settings: Settings, app_client: AppStarter
) -> None:
    """The /schema page works offline: every script, style and icon it names is served here."""
    with app_client(settings) as client:
        page = client.get("/schema")
        assert page.status_code == 200
        urls = re.findall(r"(?:src|href)=['\"]([^'\"]+)['\"]", page.text)
        assert urls
        assert all(url.startswith("/schema/assets/") for url in urls), urls
        for url in urls:
            asset = client.get(url)
            assert asset.status_code == 200, url
            assert "max-age" in asset.headers["cache-control"]


def test_request_id_on_a_successful_prediction(settings: Settings, app_client: AppStarter) -> None:
    with app_client(settings) as client:
        response = client.post(
            "/v1/predict",
            json={"instances": synthetic_images(1).tolist()},
            headers={"x-request-id": "ok-7"},
        )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "ok-7"
