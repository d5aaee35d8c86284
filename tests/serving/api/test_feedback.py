"""/v1/predict issues ids; /v1/feedback joins labels to them; /v1/quality reports the window."""

from __future__ import annotations

import time
from typing import Any

import pytest
from litestar.testing import TestClient
from sklearn.metrics import accuracy_score, confusion_matrix

from serving.app import create_app
from serving.feedback.ids import PredictionIds
from serving.settings import Settings
from serving.testing import AppClient
from tests.conftest import AppStarter
from tests.support.tiny_model import synthetic_images


def predict(client: TestClient[Any], count: int, seed: int = 0) -> list[dict[str, Any]]:
    response = client.post(
        "/v1/predict", json={"instances": synthetic_images(count, seed).tolist()}
    )
    assert response.status_code == 200
    predictions: list[dict[str, Any]] = response.json()["predictions"]
    return predictions


def send(client: TestClient[Any], items: list[tuple[str, int]]) -> dict[str, int]:
    body = {"feedback": [{"prediction_id": i, "label": label} for i, label in items]}
    response = client.post("/v1/feedback", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, int] = response.json()
    return answer


def test_feedback_is_joined_once_and_quality_follows(
    settings: Settings, app_client: AppStarter
) -> None:
    with app_client(settings) as client:
        predictions = predict(client, 40)
        ids = [p["prediction_id"] for p in predictions]
        assert len(set(ids)) == 40
        truth = [(p["label"] + (1 if n % 4 == 0 else 0)) % 10 for n, p in enumerate(predictions)]
        assert send(client, list(zip(ids[:30], truth[:30], strict=True))) == {
            "accepted": 30, "duplicates": 0, "unknown": 0,
        }  # fmt: skip
        # A relabelled id is a duplicate; the rest are new.
        answer = send(client, [(ids[0], 3), *zip(ids[30:], truth[30:], strict=True)])
        assert answer == {"accepted": 10, "duplicates": 1, "unknown": 0}
        quality = client.get("/v1/quality").json()
    labels = [p["label"] for p in predictions]
    assert quality["labelled"] == 40
    assert quality["window"] == settings.quality_window
    assert quality["accuracy"] == pytest.approx(accuracy_score(truth, labels))
    assert quality["confusion"] == confusion_matrix(truth, labels, labels=range(10)).tolist()
    assert quality["model"] == {"name": "mnist", "version": "1", "test_accuracy": 0.1}
    assert len(quality["per_class"]) == 10


def test_forged_and_foreign_ids_are_unknown(settings: Settings, app_client: AppStarter) -> None:
    with app_client(settings) as client:
        (prediction,) = predict(client, 1)
        real = prediction["prediction_id"]
        (foreign,) = PredictionIds(b"another key", 3600).issue([prediction["label"]], [0.9], "1")
        forged = real[:-2] + ("AA" if not real.endswith("AA") else "BB")
        answer = send(client, [(foreign, 1), (forged, 1), ("nonsense", 1), (real, 1)])
        assert answer == {"accepted": 1, "duplicates": 0, "unknown": 3}
        assert client.get("/v1/quality").json()["labelled"] == 1


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"not json", 400),
        (b"{}", 422),
        (b'{"feedback": []}', 422),
        (b'{"feedback": [{"prediction_id": "x", "label": 10}]}', 422),
        (b'{"feedback": [{"prediction_id": "x", "label": -1}]}', 422),
        (b'{"feedback": [{"prediction_id": "x", "label": "3"}]}', 422),
        (b'{"feedback": [{"prediction_id": "x", "label": 3.5}]}', 422),
        (b'{"feedback": [{"prediction_id": "x", "label": true}]}', 422),
        (b'{"feedback": [{"prediction_id": 5, "label": 3}]}', 422),
        (b'{"feedback": [{"label": 3}]}', 422),
        (b'{"feedback": ' + b"[" + b",".join([b'{"prediction_id": "x", "label": 1}'] * 1001)
         + b"]}", 422),
    ],
)  # fmt: skip
def test_bad_bodies_get_a_json_error(
    settings: Settings, body: bytes, status: int, app_client: AppStarter
) -> None:
    with app_client(settings) as client:
        response = client.post(
            "/v1/feedback", content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == status
    assert response.json()["error"]["status"] == status


def test_quality_before_any_feedback(settings: Settings, app_client: AppStarter) -> None:
    with app_client(settings) as client:
        quality = client.get("/v1/quality").json()
    assert (quality["labelled"], quality["accuracy"], quality["macro_f1"]) == (0, None, None)


def test_a_second_app_with_the_same_key_and_store_joins_the_first_apps_ids(
    settings: Settings,
    tmp_path: Any,
    app_client: AppStarter,
) -> None:
    """What workers (and replicas sharing a store) rely on: ids and duplicates cross apps."""
    shared = settings.model_copy(
        update={"feedback_key": "shared secret", "quality_store": tmp_path / "q.sqlite3"}
    )
    with app_client(shared) as first, app_client(shared) as second:
        ids = [p["prediction_id"] for p in predict(first, 5)]
        assert send(second, [(i, 1) for i in ids]) == {"accepted": 5, "duplicates": 0, "unknown": 0}
        assert send(first, [(ids[0], 1)])["duplicates"] == 1
        assert first.get("/v1/quality").json() == second.get("/v1/quality").json()


def test_issued_ids_join_whatever_door_issued_them(settings: Settings) -> None:
    """The one issuer every door uses: one id per row, in order, accepted by feedback."""
    app = create_app(settings)
    feedback = app.feedback
    ids = feedback.issue_ids([3, 1, 4], [0.91, 0.91, 0.91], "1")
    issued = [feedback.ids.verify(i) for i in ids]
    assert [p.label if p is not None else None for p in issued] == [3, 1, 4]
    with AppClient(app) as client:
        assert send(client, [(i, 3) for i in ids]) == {"accepted": 3, "duplicates": 0, "unknown": 0}
        assert client.get("/v1/quality").json()["confusion"][3][1] == 1


def test_ids_past_the_horizon_are_unknown(settings: Settings, app_client: AppStarter) -> None:
    short = settings.model_copy(update={"feedback_horizon_s": 0.5})
    with app_client(short) as client:
        (prediction,) = predict(client, 1)
        time.sleep(1.6)  # issue times are whole seconds: expired for sure after 1.5 s
        answer = send(client, [(prediction["prediction_id"], 1)])
    assert answer == {"accepted": 0, "duplicates": 0, "unknown": 1}


def test_v2_responses_carry_prediction_ids_that_feedback_joins(
    settings: Settings, app_client: AppStarter
) -> None:
    """OIP v2 answers put one id per row in ``parameters.prediction_ids``, in row order."""
    pixels = synthetic_images(5, seed=3)
    body = {
        "inputs": [
            {"name": "pixels", "shape": [5, 784], "datatype": "FP32", "data": pixels.tolist()}
        ],
        "outputs": [{"name": "label"}],
    }
    with app_client(settings) as client:
        answer = client.post("/v2/models/mnist/infer", json=body).json()
        ids = answer["parameters"]["prediction_ids"]
        (label_output,) = answer["outputs"]
        labels = label_output["data"]
        assert len(ids) == len(set(ids)) == 5
        truth = [labels[0], *((label + 1) % 10 for label in labels[1:])]
        assert send(client, list(zip(ids, truth, strict=True)))["accepted"] == 5
        quality = client.get("/v1/quality").json()
    assert quality["accuracy"] == pytest.approx(accuracy_score(truth, labels))
    assert quality["confusion"] == confusion_matrix(truth, labels, labels=range(10)).tolist()


@pytest.mark.parametrize("version", ["0", "-3", "x", "7566596920601973096448"])
def test_a_version_that_cannot_be_one_is_a_400(version: str, app_client: AppStarter) -> None:
    """Found by schemathesis: a version past SQLite's integers was a 500."""
    with app_client() as client:
        response = client.get("/v1/quality", params={"version": version})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["status"] == 400
