"""Access control enforced on the real app, route by route: every operation of the OpenAPI
document answers 401 without a key, 403 with a key that lacks its scope, and is let through
with one that has it (whatever it then answers). A route added without a scope fails here."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from serving.access.scopes import Scope, route_scope
from serving.settings import Settings
from tests.conftest import AppStarter

KEYS = {scope: f"key-for-{scope}-0123456789" for scope in ("infer", "feedback", "read", "admin")}
SAMPLE = {"name": "mnist", "version": "1"}


def keys_file(path: Path, rate: str = "") -> Path:
    path.write_text(
        "".join(
            f'[[keys]]\nname = "{scope}-key"\nkey = "{key}"\nscopes = ["{scope}"]\n{rate}\n'
            for scope, key in KEYS.items()
        )
    )
    return path


def bearer(scope: str) -> dict[str, str]:
    return {"authorization": f"Bearer {KEYS[scope]}"}


def operations(document: dict[str, Any]) -> list[tuple[str, str]]:
    found = []
    for template, item in document["paths"].items():
        path = re.sub(r"\{(\w+)\}", lambda m: SAMPLE[m.group(1)], template)
        found += [(method.upper(), path) for method in item if method in ("get", "post")]
    return found


def test_every_documented_operation_enforces_its_scope(
    tmp_path: Path, settings: Settings, app_client: AppStarter
) -> None:
    required = settings.model_copy(
        update={"keys_file": keys_file(tmp_path / "keys.toml"), "require_keys": True}
    )
    with app_client(required) as client:
        document = client.get("/schema/openapi.json", headers=bearer("read")).json()
        checked: dict[tuple[str, str], tuple[int, int | None, int | None]] = {}
        for method, path in operations(document):
            scope = route_scope(method, path)
            assert scope in (Scope.INFER, Scope.FEEDBACK, Scope.READ, Scope.ADMIN, Scope.OPEN), (
                method,
                path,
            )
            anonymous = client.request(method, path).status_code
            if scope is Scope.OPEN:
                checked[(method, path)] = (anonymous, None, None)
                continue
            other = next(s for s in KEYS if s != scope.value)
            wrong = client.request(method, path, headers=bearer(other)).status_code
            right = client.request(method, path, headers=bearer(scope.value)).status_code
            checked[(method, path)] = (anonymous, wrong, right)
    assert len(checked) > 15
    for operation, (no_key, other_scope, own_scope) in checked.items():
        if other_scope is None:  # open: health and readiness
            assert no_key in (200, 503), operation
            continue
        assert no_key == 401, operation
        assert other_scope == 403, operation
        assert own_scope not in (401, 403), operation


def test_without_a_keys_file_the_admin_api_is_off_and_the_rest_open(
    app_client: AppStarter,
) -> None:
    with app_client() as client:
        unload = client.post("/v2/repository/models/mnist/unload")
        index = client.post("/v2/repository/index", headers=bearer("admin"))
        models = client.get("/v1/models")
        served = client.get("/v2/models/mnist/ready")
    assert unload.status_code == 403
    assert "SERVING_KEYS_FILE" in unload.json()["error"]  # OIP shape: how to turn it on
    assert index.status_code == 403  # a key means nothing without a keys file
    assert models.status_code == 200
    assert served.status_code == 200  # still loaded: the unload was refused


def test_refusals_say_why_in_the_routes_error_shape(
    tmp_path: Path, settings: Settings, app_client: AppStarter
) -> None:
    with_keys = settings.model_copy(update={"keys_file": keys_file(tmp_path / "keys.toml")})
    with app_client(with_keys) as client:
        missing = client.post("/v2/repository/index")
        invalid = client.post("/v1/predict", headers={"authorization": "Bearer nope"}, json={})
        malformed = client.get("/v1/models", headers={"authorization": "Basic eDp5"})
        forbidden = client.post("/v2/repository/index", headers=bearer("infer"))
        anonymous_infer = client.post(
            "/v1/predict", json={"instances": [[0.0] * 784]}, headers={"x-request-id": "a-1"}
        )
        metrics = client.get("/metrics").text
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert isinstance(missing.json()["error"], str)  # OIP path: OIP shape
    assert invalid.status_code == 401
    assert invalid.json()["error"]["status"] == 401  # v1 path: v1 shape
    assert "nope" not in invalid.text
    assert malformed.status_code == 401
    assert forbidden.status_code == 403
    assert "insufficient_scope" in forbidden.headers["www-authenticate"]
    assert anonymous_infer.status_code == 200  # keys exist, but infer is not required
    for reason in ("missing_key", "invalid_key", "forbidden"):
        assert f'inference_rejected_requests_total{{reason="{reason}"}}' in metrics


def test_a_key_over_its_rate_gets_429_before_its_body_is_read(
    tmp_path: Path, settings: Settings, app_client: AppStarter
) -> None:
    """A bucket of 2 that refills once every 100 s: the third request is refused at once, in
    the rejection metric as ``rate_limited``; another key is not affected."""
    limited = keys_file(tmp_path / "keys.toml", rate="rate_per_s = 0.01\nburst = 2\n")
    with app_client(settings.model_copy(update={"keys_file": limited})) as client:
        body = {"instances": [[0.0] * 784]}
        answers = [client.post("/v1/predict", json=body, headers=bearer("infer")) for _ in range(2)]
        refused = client.post(
            "/v1/predict", content=b"{not json", headers={**bearer("infer"), "content-type": "x"}
        )
        other = client.get("/v1/models", headers=bearer("read"))
        metrics = client.get("/metrics", headers=bearer("read")).text
    assert [a.status_code for a in answers] == [200, 200]
    assert refused.status_code == 429  # not 400/415: the body was never read
    assert 90 <= int(refused.headers["retry-after"]) <= 100
    assert "infer-key" in refused.json()["error"]["message"]
    assert other.status_code == 200
    assert 'inference_rejected_requests_total{reason="rate_limited"} 1.0' in metrics
    assert 'key="infer-key"' in metrics  # requests are counted by the key's name


@pytest.mark.parametrize("required", [False, True])
def test_the_key_name_labels_requests_never_the_key(
    tmp_path: Path, settings: Settings, app_client: AppStarter, required: bool
) -> None:
    path = keys_file(tmp_path / "keys.toml")
    with app_client(settings.model_copy(update={"keys_file": path, "require_keys": required})) as c:
        assert c.get("/v1/models", headers=bearer("read")).status_code == 200
        metrics = c.get("/metrics", headers=bearer("read")).text
    assert 'key="read-key",method="GET",protocol="http",route="/v1/models",status="200"' in metrics
    assert all(key not in metrics for key in KEYS.values())
