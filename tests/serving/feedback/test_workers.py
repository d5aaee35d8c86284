"""Two workers behind one socket answer the same whole-service quality and drift figures."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from tests.conftest import ServerStarter
from training.idx import load_test_digits

DIGITS = 2000
PER_REQUEST = 20
SHIFTED_EVERY = 7  # every 7th label is sent wrong on purpose


def fresh(method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One request on a NEW connection, so the kernel may hand it to either worker."""
    with httpx.Client(timeout=30) as client:
        return client.request(method, url, headers={"connection": "close"}, **kwargs)


def scrape(base_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = fresh("GET", f"{base_url}/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def worker_cpu(pid: int) -> list[float]:
    """CPU seconds of each uvicorn worker (spawned children; not the resource tracker)."""
    workers = [
        child
        for child in psutil.Process(pid).children(recursive=True)
        if "spawn_main" in " ".join(child.cmdline())
    ]
    return [sum(worker.cpu_times()[:2]) for worker in workers]


@pytest.mark.timeout(180)
def test_two_workers_report_the_whole_service(
    serving_server: ServerStarter, tiny_model_repository: Path, mnist_dir: Path
) -> None:
    images, labels = load_test_digits(mnist_dir)
    pixels = images[:DIGITS].reshape(DIGITS, -1)
    truth = labels[:DIGITS].astype(np.int64)
    env = {
        "SERVING_MODEL_REPOSITORY": str(tiny_model_repository),
        "SERVING_WORKERS": "2",
        "SERVING_METRICS_SAMPLE_INTERVAL_S": "0.5",
        "SERVING_DRIFT_WINDOW": "5000",
    }
    with serving_server(env, ready_timeout_s=60) as server:
        url = server.base_url
        before = worker_cpu(server.process.pid)
        assert len(before) == 2
        predicted: list[int] = []
        ids: list[str] = []
        for start in range(0, DIGITS, PER_REQUEST):
            body = pixels[start : start + PER_REQUEST].tobytes()
            response = httpx.post(
                f"{url}/v1/predict",
                content=body,
                headers={"content-type": "application/octet-stream", "connection": "close"},
                timeout=30,
            )
            assert response.status_code == 200, response.text
            for prediction in response.json()["predictions"]:
                predicted.append(prediction["label"])
                ids.append(prediction["prediction_id"])
        after = worker_cpu(server.process.pid)
        # Both workers computed a share of the predictions (not only the 0.5 s sampler).
        assert all(b - a > 0.05 for a, b in zip(before, after, strict=True)), (before, after)

        sent = truth.copy()
        sent[::SHIFTED_EVERY] = (sent[::SHIFTED_EVERY] + 1) % 10
        counts = {"accepted": 0, "duplicates": 0, "unknown": 0}
        for start in range(0, DIGITS, 250):
            items = [
                {"prediction_id": i, "label": int(label)}
                for i, label in zip(
                    ids[start : start + 250], sent[start : start + 250], strict=True
                )
            ]
            answer = fresh("POST", f"{url}/v1/feedback", json={"feedback": items}).json()
            counts = {k: counts[k] + answer[k] for k in counts}
        assert counts == {"accepted": DIGITS, "duplicates": 0, "unknown": 0}
        # Sent again (to whichever worker): every one is a duplicate, seen by the other worker.
        again = fresh(
            "POST", f"{url}/v1/feedback",
            json={"feedback": [{"prediction_id": i, "label": 1} for i in ids[:1000]]},
        ).json()  # fmt: skip
        assert again == {"accepted": 0, "duplicates": 1000, "unknown": 0}

        reports = [fresh("GET", f"{url}/v1/quality").json() for _ in range(8)]
        time.sleep(1.5)  # both workers have published their windows since the last prediction
        metrics = [scrape(url) for _ in range(6)]

    assert all(report == reports[0] for report in reports)
    report = reports[0]
    assert report["labelled"] == DIGITS
    assert report["accuracy"] == pytest.approx(accuracy_score(sent, predicted))
    assert report["macro_f1"] == pytest.approx(f1_score(sent, predicted, average="macro"))
    assert report["confusion"] == confusion_matrix(sent, predicted, labels=range(10)).tolist()
    for values in metrics:
        assert values[("inference_quality_accuracy", ())] == pytest.approx(report["accuracy"])
        assert values[("inference_quality_macro_f1", ())] == pytest.approx(report["macro_f1"])
        assert values[("inference_feedback_total", (("outcome", "accepted"),))] == DIGITS
        assert values[("inference_feedback_total", (("outcome", "duplicate"),))] == 1000
        confusion = sum(
            v for (name, _), v in values.items() if name == "inference_feedback_confusion_total"
        )
        assert confusion == DIGITS
        # Whole-service drift: the sum of both workers' windows, the same from either worker.
        assert (
            values[("inference_drift_service_window_images", ())]
            == values[("inference_drift_window_images", ())]
        )
        assert values[("inference_drift_service_window_images", ())] >= DIGITS
        assert np.isfinite(values[("inference_drift_prediction_js_distance", ())])
    assert len({v[("inference_drift_psi_max", ())] for v in metrics}) == 1
    assert len({v[("inference_drift_prediction_js_distance", ())] for v in metrics}) == 1
