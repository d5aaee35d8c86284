"""``python -m benchmarks.models`` on real (tiny) models: one row per model and variant."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from benchmarks.models import conv_int8, main
from tests.support.tiny_model import write_model_version


def run(tmp_path: Path, *extra: str) -> list[list[str]]:
    out = tmp_path / "results"
    args = ["--models", str(tmp_path / "models"), "--seconds", "0.05", "--output", str(out)]
    assert main([*args, *extra]) == 0
    text = (out / f"{dt.date.today().isoformat()}-models.md").read_text()
    return [line.split(" | ") for line in text.splitlines() if line.startswith("| mnist")]


def test_table_has_a_row_per_model_and_variant(tmp_path: Path) -> None:
    write_model_version(tmp_path / "models", "mnist")
    write_model_version(tmp_path / "models", "mnist-cnn", seed=1)
    rows = run(tmp_path)
    assert [row[:3] for row in rows] == [
        ["| mnist v1", "mlp", "fp32"],
        ["| mnist v1", "mlp", "int8"],
        ["| mnist-cnn v1", "mlp", "fp32"],
        ["| mnist-cnn v1", "mlp", "int8"],
    ]
    for row in rows:
        assert 0.0 <= float(row[4].removesuffix(" %")) <= 100.0
        assert all(float(cell) > 0 for cell in row[5:8])


def conv_model() -> onnx.ModelProto:
    """pixels [batch, 784] -> 28x28 -> Conv 4x3x3 -> MatMul -> Softmax (the serving contract)."""
    rng = np.random.default_rng(0)
    initializers = [
        numpy_helper.from_array(np.array([-1, 1, 28, 28], np.int64), "image_shape"),
        numpy_helper.from_array(rng.normal(0, 0.1, (4, 1, 3, 3)).astype(np.float32), "kernel"),
        numpy_helper.from_array(np.array([-1, 4 * 26 * 26], np.int64), "flat_shape"),
        numpy_helper.from_array(rng.normal(0, 0.1, (4 * 26 * 26, 10)).astype(np.float32), "dense"),
    ]
    nodes = [
        helper.make_node("Reshape", ["pixels", "image_shape"], ["image"]),
        helper.make_node("Conv", ["image", "kernel"], ["features"]),
        helper.make_node("Reshape", ["features", "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "dense"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_cnn",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 784])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_conv_int8_row_only_for_models_with_convolutions(tmp_path: Path) -> None:
    write_model_version(tmp_path / "models", "mnist")
    cnn = write_model_version(tmp_path / "models", "mnist-cnn")
    onnx.save(conv_model(), cnn / "model.onnx")
    assert conv_int8(tmp_path / "models/mnist/1/model.onnx", tmp_path) is None
    quantized = conv_int8(cnn / "model.onnx", tmp_path)
    assert quantized is not None
    assert "ConvInteger" in {node.op_type for node in onnx.load(str(quantized)).graph.node}
    rows = run(tmp_path, "--conv-int8")
    assert [row[2] for row in rows] == [
        "fp32",
        "int8",
        "fp32",
        "int8",
        "int8, Conv too (not shipped)",
    ]


def test_missing_model_exits_2(tmp_path: Path) -> None:
    assert main(["--models", str(tmp_path), "--output", str(tmp_path / "out")]) == 2
