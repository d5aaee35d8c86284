"""The CNN through the command line: same IO contract, parity gate, int8 variant, and the real
service serving it unchanged."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest

from model_repository import load_metadata, resolve
from tests.conftest import ServerStarter
from training import evaluate
from training.data import Mnist, scale


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory: pytest.TempPathFactory, mnist_dir: Path) -> tuple[Path, str]:
    """``python -m training --arch cnn`` on 2000 images for one epoch: (repository, stdout)."""
    from training.__main__ import main

    root = tmp_path_factory.mktemp("cnn-models")
    args = ["--data-dir", str(mnist_dir), "--output", str(root), "--arch", "cnn", "--epochs", "1"]
    args += ["--train-limit", "2000", "--test-limit", "500"]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(args) == 0
    return root, stdout.getvalue()


def test_cnn_keeps_the_io_contract_and_passes_parity(cnn_run: tuple[Path, str]) -> None:
    version = resolve(cnn_run[0], "mnist")
    proto = onnx.load(str(version.model_file("fp32")))
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert (inp.name, out.name) == ("pixels", "probabilities")
    assert (
        inp.type.tensor_type.elem_type == out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    )
    assert [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == ["batch", 784]
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["batch", 10]
    assert sum(node.op_type == "Conv" for node in proto.graph.node) == 2
    meta = load_metadata(version.metadata_file)
    assert meta.training["arch"] == "cnn"
    assert "hidden_units" not in meta.training
    # The CNN met its target at a constant rate; the cosine decay is the MLP's default only.
    assert meta.lr_schedule == "constant"
    assert meta.parity.max_abs_diff <= 1e-4
    assert meta.parity.argmax_agreement == 1.0
    assert len(meta.history) == 1


def test_cnn_int8_quantizes_dense_layers_only(cnn_run: tuple[Path, str], mnist: Mnist) -> None:
    version = resolve(cnn_run[0], "mnist")
    ops = {node.op_type for node in onnx.load(str(version.model_file("int8"))).graph.node}
    assert "MatMulInteger" in ops
    assert "Conv" in ops
    assert "ConvInteger" not in ops
    x = scale(mnist.x_test[:500])
    int8 = evaluate.run(evaluate.session(version.model_file("int8")), x)
    meta = load_metadata(version.metadata_file)
    assert meta.test_accuracy["onnx_int8"] == pytest.approx(
        evaluate.accuracy(int8, mnist.y_test[:500])
    )


def test_summary_reports_accuracy_parity_and_path(cnn_run: tuple[Path, str]) -> None:
    root, stdout = cnn_run
    version = resolve(root, "mnist")
    accuracy = load_metadata(version.metadata_file).test_accuracy
    assert f"Keras {accuracy['keras'] * 100:.2f} %" in stdout
    assert f"int8 {accuracy['onnx_int8'] * 100:.2f} %" in stdout
    assert "parity" in stdout
    assert f"published      {version.path}" in stdout


@pytest.mark.e2e
def test_service_serves_the_cnn_unchanged(
    cnn_run: tuple[Path, str], serving_server: ServerStarter, mnist: Mnist
) -> None:
    root = cnn_run[0]
    version = resolve(root, "mnist")
    pixels = scale(mnist.x_test[:16])
    expected = evaluate.run(evaluate.session(version.model_file("fp32")), pixels)
    env = {"SERVING_MODEL_REPOSITORY": str(root), "SERVING_MODEL_VARIANT": "fp32"}
    with serving_server(env) as server:
        response = httpx.post(
            f"{server.base_url}/v1/predict", json={"instances": pixels.tolist()}, timeout=30
        )
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    got = np.array([p["probabilities"] for p in predictions], dtype=np.float32)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert [p["label"] for p in predictions] == expected.argmax(axis=1).tolist()
