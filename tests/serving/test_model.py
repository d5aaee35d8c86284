"""Where a request is computed: a model version verified against its metadata before a session
is built (a missing, corrupt or mismatched file fails at load with one clear message), and
``predict`` returning the probabilities with each row's label and confidence."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from model_repository.layout import FP32_FILE, INT8_FILE, METADATA_FILE
from model_repository.metadata import sha256_file
from serving.batching import Outputs
from serving.model import ModelLoadError, load_model, locate, locate_metadata, session_options
from serving.settings import Settings
from tests.support.tiny_model import synthetic_images


@pytest.fixture
def repository(tiny_model_repository: Path, tmp_path: Path) -> Path:
    """A copy of the tiny repository this test may damage."""
    copy = tmp_path / "models"
    shutil.copytree(tiny_model_repository, copy)
    return copy


def version_dir(repository: Path) -> Path:
    return repository / "mnist" / "1"


def edit_metadata(repository: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = version_dir(repository) / METADATA_FILE
    metadata = json.loads(path.read_text())
    change(metadata)
    path.write_text(json.dumps(metadata))


def load_error(repository: Path, **settings: Any) -> str:
    with pytest.raises(ModelLoadError) as raised:
        load_model(Settings(model_repository=repository, **settings))
    return str(raised.value)


def test_the_configured_version_loads_and_predict_returns_outputs(
    tiny_model_repository: Path,
) -> None:
    model = load_model(Settings(model_repository=tiny_model_repository))
    assert (model.name, model.version, model.variant) == ("mnist", "1", "fp32")
    assert (model.input_name, model.output_name) == ("pixels", "probabilities")
    assert (model.num_features, model.num_classes) == (784, 10)
    assert model.model_file == version_dir(tiny_model_repository) / FP32_FILE
    pixels = synthetic_images(5, seed=3)
    outputs = model.predict(pixels)
    assert isinstance(outputs, Outputs)
    reference = ort.InferenceSession(str(model.model_file)).run(None, {"pixels": pixels})[0]
    np.testing.assert_allclose(outputs.probabilities, reference, rtol=1e-6)
    assert outputs.labels.tolist() == reference.argmax(axis=1).tolist()
    assert outputs.confidences.tolist() == reference.max(axis=1).tolist()


def test_the_int8_variant_serves_its_own_file_with_its_own_checksum(
    tiny_model_repository: Path,
) -> None:
    fp32 = load_model(Settings(model_repository=tiny_model_repository))
    int8 = load_model(Settings(model_repository=tiny_model_repository, model_variant="int8"))
    assert int8.model_file.name == INT8_FILE
    assert int8.sha256 == int8.metadata.files[INT8_FILE].sha256 != fp32.sha256
    assert int8.predict(synthetic_images(2)).rows == 2


def test_no_version_at_all(tmp_path: Path) -> None:
    assert "no versions of model 'mnist'" in load_error(tmp_path / "empty")


def test_a_missing_model_file_names_the_file_and_variant(repository: Path) -> None:
    (version_dir(repository) / INT8_FILE).unlink()
    message = load_error(repository, model_variant="int8")
    assert f"{INT8_FILE} is missing (variant 'int8')" in message


def test_a_file_that_does_not_match_its_checksum_is_corrupt(repository: Path) -> None:
    model = version_dir(repository) / FP32_FILE
    model.write_bytes(model.read_bytes()[:-100])
    message = load_error(repository)
    assert "is corrupt: sha256" in message
    assert "re-export or re-copy" in message
    with pytest.raises(ModelLoadError, match="is corrupt"):  # the CLI's pre-flight says the same
        locate(Settings(model_repository=repository))


def test_a_file_without_a_checksum_in_the_metadata_is_refused(repository: Path) -> None:
    edit_metadata(repository, lambda m: m["files"].pop(FP32_FILE))
    assert f"lists no checksum for {FP32_FILE}" in load_error(repository)


def test_tensor_names_the_file_does_not_have_are_refused(repository: Path) -> None:
    def rename(metadata: dict[str, Any]) -> None:
        metadata["inputs"][0]["name"] = "image"

    edit_metadata(repository, rename)
    message = load_error(repository)
    assert "has inputs ['pixels'] and outputs ['probabilities']" in message
    assert "metadata declares 'image' -> 'probabilities'" in message


def test_a_variable_feature_dimension_is_refused(repository: Path) -> None:
    def variable(metadata: dict[str, Any]) -> None:
        metadata["inputs"][0]["shape"] = ["batch", "pixels"]

    edit_metadata(repository, variable)
    assert "last tensor dimensions must be fixed" in load_error(repository)


def test_missing_or_invalid_metadata_is_a_load_error(repository: Path) -> None:
    metadata = version_dir(repository) / METADATA_FILE
    metadata.write_text("{not json")
    assert f"{metadata} is invalid" in load_error(repository)
    with pytest.raises(ModelLoadError, match="is invalid"):
        locate_metadata(Settings(model_repository=repository))


def test_a_file_onnxruntime_cannot_read_is_a_load_error(repository: Path) -> None:
    model = version_dir(repository) / FP32_FILE
    model.write_bytes(b"not an onnx model")

    def checksum(metadata: dict[str, Any]) -> None:  # a consistent but unusable deploy
        metadata["files"][FP32_FILE]["sha256"] = sha256_file(model)

    edit_metadata(repository, checksum)
    assert "onnxruntime cannot load" in load_error(repository)


def test_sessions_use_the_configured_threads_without_spinning() -> None:
    options = session_options(Settings(ort_intra_op_threads=2, ort_inter_op_threads=3))
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (2, 3)
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0"
