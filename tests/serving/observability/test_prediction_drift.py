"""Prediction drift on real digits: genuine test digits stay close to the reference, inverted
and noisy ones move the predicted classes (JS distance), the confidences and the inputs (PSI)."""

from __future__ import annotations

import math
from pathlib import Path

import msgspec
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest
from prometheus_client.parser import text_string_to_metric_families

from model_repository.features import PSI_ALERT, PSI_WARN, training_stats
from model_repository.layout import METADATA_FILE
from model_repository.metadata import dump_metadata, load_metadata
from model_repository.predictions import JS_ALERT, JS_WARN, prediction_reference
from serving.app import create_app
from serving.settings import Settings
from serving.testing import AppClient
from tests.support.tiny_model import write_model_version
from training.idx import TRAIN_IMAGES, load_test_digits, read_idx

Pixels = npt.NDArray[np.uint8]
REFERENCE = 2000
LIVE = 1000


@pytest.fixture(scope="module")
def digits(mnist_dir: Path) -> Pixels:
    images, _ = load_test_digits(mnist_dir)
    return images.reshape(len(images), -1)


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory, mnist_dir: Path, digits: Pixels) -> Path:
    """The tiny model, with references from genuine MNIST: training inputs and test predictions."""
    root = tmp_path_factory.mktemp("drift-repository")
    directory = write_model_version(root)
    session = ort.InferenceSession(str(directory / "model.onnx"))
    scaled = digits[:REFERENCE].astype(np.float32) / 255
    probabilities = session.run(None, {"pixels": scaled})[0]
    train = read_idx(mnist_dir / TRAIN_IMAGES)[:10_000].reshape(10_000, -1) / 255.0
    metadata = load_metadata(directory / METADATA_FILE)
    dump_metadata(
        msgspec.structs.replace(
            metadata,
            training_stats=training_stats(train),
            prediction_reference=prediction_reference(probabilities),
        ),
        directory / METADATA_FILE,
    )
    return root


def drift_after(repository: Path, pixels: Pixels) -> dict[str, float]:
    settings = Settings(model_repository=repository, drift_window=LIVE)
    with AppClient(create_app(settings)) as client:
        for start in range(0, len(pixels), 50):
            response = client.post(
                "/v1/predict",
                content=pixels[start : start + 50].tobytes(),
                headers={"content-type": "application/octet-stream"},
            )
            assert response.status_code == 200
        text = client.get("/metrics").text
    return {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.labels
    }


def test_genuine_digits_do_not_drift(repository: Path, digits: Pixels) -> None:
    values = drift_after(repository, digits[REFERENCE : REFERENCE + LIVE])
    assert values["inference_drift_prediction_js_distance"] < JS_WARN
    assert values["inference_drift_confidence_psi"] < PSI_WARN
    assert values["inference_drift_psi_max"] < PSI_WARN


def test_inverted_and_noisy_digits_drift(repository: Path, digits: Pixels) -> None:
    live = digits[REFERENCE : REFERENCE + LIVE].copy()
    rng = np.random.default_rng(0)
    live[::2] = 255 - live[::2]
    noise = rng.integers(0, 256, live[1::2].shape, dtype=np.uint8)
    live[1::2] = np.maximum(live[1::2], noise)
    values = drift_after(repository, live)
    assert values["inference_drift_prediction_js_distance"] > JS_ALERT
    assert values["inference_drift_psi_max"] > PSI_ALERT
    assert values["inference_drift_confidence_psi"] > PSI_WARN


def test_a_model_without_a_reference_leaves_prediction_drift_nan(
    tiny_model_repository: Path, tmp_path: Path
) -> None:
    root = tmp_path / "old"
    directory = write_model_version(root)
    raw = msgspec.json.decode((directory / METADATA_FILE).read_bytes())
    del raw["prediction_reference"]  # metadata written before prediction drift existed
    (directory / METADATA_FILE).write_bytes(msgspec.json.encode(raw))
    assert load_metadata(directory / METADATA_FILE).prediction_reference is None
    values = drift_after(root, np.zeros((10, 784), dtype=np.uint8))
    assert math.isnan(values["inference_drift_prediction_js_distance"])
    assert math.isnan(values["inference_drift_confidence_psi"])
