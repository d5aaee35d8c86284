"""Two workers behind one socket answer the same whole-service quality and drift figures."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from tests.conftest import ServerStarter
from tests.support.server import RunningServer
from tests.support.waiting import wait_until
from training.idx import load_test_digits

DIGITS = 2000
PER_REQUEST = 20
SHIFTED_EVERY = 7  # every 7th label is sent wrong on purpose
SERVICE_IMAGES = ("inference_drift_service_window_images", ())


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


def worker_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of each uvicorn worker (spawned children; not the resource tracker), by pid:
    a restarted worker is a new pid, and the order of children can change between calls."""
    return {
        child.pid: sum(child.cpu_times()[:2])
        for child in psutil.Process(pid).children(recursive=True)
        if "spawn_main" in " ".join(child.cmdline())
    }


def owner(supervisor_pid: int, client_port: int) -> int | None:
    """The worker holding the server side of the connection from ``client_port``, once it has
    accepted it."""
    for child in psutil.Process(supervisor_pid).children():
        with contextlib.suppress(psutil.NoSuchProcess):
            for conn in child.net_connections("tcp"):
                if conn.raddr and conn.raddr.port == client_port:
                    pid: int = child.pid
                    return pid
    return None


def accepted_by(supervisor_pid: int, client_port: int) -> int:
    """The worker that accepts the connection from ``client_port`` (it may take a moment)."""
    found: list[int] = []

    def known() -> bool:
        worker = owner(supervisor_pid, client_port)
        if worker is not None:
            found.append(worker)
        return worker is not None

    wait_until(known, what="the connection accepted by a worker")
    return found[0]


def scrape_each_worker(server: RunningServer, workers: set[int]) -> None:
    """One /metrics request answered by each worker: a scrape makes the worker answering it
    sample and publish at once, so afterwards every worker's gauges are current."""
    left = set(workers)
    while left:  # new connections until each worker has accepted one (the kernel picks)
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            worker = accepted_by(server.process.pid, sock.getsockname()[1])
            if worker not in left:
                continue
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            while sock.recv(65536):
                pass
            left.discard(worker)


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
        workers = set(before)
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
        # The same two workers (none restarted), and both computed a share of the predictions
        # (not only the 0.5 s sampler).
        assert set(after) == workers, (before, after)
        assert all(after[pid] - before[pid] > 0.05 for pid in workers), (before, after)

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
        # Both workers' windows are in the shared store once the service-wide window holds
        # every image (each worker's only grows); then each worker is made to publish from it.
        wait_until(lambda: scrape(url).get(SERVICE_IMAGES, 0) >= DIGITS, what="windows shared")
        scrape_each_worker(server, workers)
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
        assert values[SERVICE_IMAGES] == values[("inference_drift_window_images", ())]
        assert values[SERVICE_IMAGES] >= DIGITS
        assert np.isfinite(values[("inference_drift_prediction_js_distance", ())])
    assert len({v[("inference_drift_psi_max", ())] for v in metrics}) == 1
    assert len({v[("inference_drift_prediction_js_distance", ())] for v in metrics}) == 1
