"""A real, tiny ONNX model written as a complete model-repository version.

784 -> 10: MatMul + Add + Softmax, input ``pixels`` float32 [batch, 784], output
``probabilities`` float32 [batch, 10], opset 17, plus its dynamic-int8 twin. No TensorFlow: the
graph is built with the onnx helper API, so the serving tests run in the slim environment.

``poison=True`` adds a Gather whose index is computed from pixel 0 of each row: a row whose
first pixel is exactly 1.0 makes onnxruntime itself raise (index out of bounds) for the whole
batch. That is a genuine runtime failure, used to test failure isolation end to end.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic

from model_repository.features import training_stats
from model_repository.layout import FP32_FILE, INT8_FILE, METADATA_FILE
from model_repository.metadata import (
    FileInfo,
    Metadata,
    Parity,
    Preprocessing,
    TensorSpec,
    dump_metadata,
    sha256_file,
)
from model_repository.predictions import prediction_reference

NUM_FEATURES = 784
NUM_CLASSES = 10
#: A first pixel equal to this poisons the batch of a ``poison=True`` model.
POISON_VALUE = 1.0
_POISON_TABLE = 10  # Gather table size: index floor(pixel0 * 10) == 10 is out of bounds.


def build_model(
    seed: int = 0, *, poison: bool = False, swap: tuple[int, int] | None = None
) -> onnx.ModelProto:
    """``swap``: the same weights with two output classes exchanged (the last layer's columns
    permuted): a broken candidate for the rollout tests."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(0.0, 0.1, (NUM_FEATURES, NUM_CLASSES)).astype(np.float32)
    bias = rng.normal(0.0, 0.1, (NUM_CLASSES,)).astype(np.float32)
    if swap is not None:
        order = list(range(NUM_CLASSES))
        order[swap[0]], order[swap[1]] = order[swap[1]], order[swap[0]]
        weights, bias = weights[:, order], bias[order]
    initializers = [
        numpy_helper.from_array(weights, "weights"),
        numpy_helper.from_array(bias, "bias"),
    ]
    nodes = [
        helper.make_node("MatMul", ["pixels", "weights"], ["matmul"]),
        helper.make_node("Add", ["matmul", "bias"], ["logits"]),
    ]
    softmax_input = "logits"
    if poison:
        initializers += [
            numpy_helper.from_array(np.array([0], dtype=np.int64), "starts"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "ends"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "axes"),
            numpy_helper.from_array(np.array(float(_POISON_TABLE), dtype=np.float32), "scale"),
            numpy_helper.from_array(np.zeros(_POISON_TABLE, dtype=np.float32), "table"),
        ]
        nodes += [
            helper.make_node("Slice", ["pixels", "starts", "ends", "axes"], ["first"]),
            helper.make_node("Mul", ["first", "scale"], ["scaled"]),
            helper.make_node("Floor", ["scaled"], ["floored"]),
            helper.make_node("Cast", ["floored"], ["index"], to=TensorProto.INT64),
            helper.make_node("Gather", ["table", "index"], ["zeros"], axis=0),
            helper.make_node("Add", ["logits", "zeros"], ["checked"]),
        ]
        softmax_input = "checked"
    nodes.append(helper.make_node("Softmax", [softmax_input], ["probabilities"], axis=-1))
    graph = helper.make_graph(
        nodes,
        "tiny_mnist",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", NUM_FEATURES])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", NUM_CLASSES])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def synthetic_images(count: int, seed: int = 0) -> npt.NDArray[np.float32]:
    """MNIST-like scaled pixels: mostly dark, some bright strokes, never exactly POISON_VALUE."""
    rng = np.random.default_rng(seed)
    images = np.where(rng.random((count, NUM_FEATURES)) < 0.2, rng.random((count, NUM_FEATURES)), 0)
    return np.clip(images, 0.0, 0.99).astype(np.float32)


def reference_probabilities(model: onnx.ModelProto, seed: int) -> npt.NDArray[np.float32]:
    """The model's outputs on synthetic images: its stand-in for a test set's predictions."""
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    result: npt.NDArray[np.float32] = session.run(None, {"pixels": synthetic_images(512, seed)})[0]
    return result


def write_model_version(
    root: Path,
    name: str = "mnist",
    version: int = 1,
    *,
    seed: int = 0,
    poison: bool = False,
    swap: tuple[int, int] | None = None,
    int8_twin: bool = False,
    folder: str | None = None,
) -> Path:
    """Write ``root/name/version/`` with model.onnx, model.int8.onnx and metadata.json.

    ``int8_twin``: model.onnx is the dynamic-int8 quantisation of the seed's weights (the
    "int8 variant of the same weights", a good rollout candidate). ``folder``: write under this
    name instead of the version's (publish it with a rename, as docs/rollout.md does)."""
    directory = root / name / (folder or str(version))
    directory.mkdir(parents=True, exist_ok=True)
    fp32 = directory / FP32_FILE
    int8 = directory / INT8_FILE
    model = build_model(seed, poison=poison, swap=swap)
    onnx.save(model, fp32)
    quantize_dynamic(fp32, int8, weight_type=QuantType.QInt8)
    if int8_twin:
        fp32.write_bytes(int8.read_bytes())
        model = onnx.load(fp32)
    stats = training_stats(synthetic_images(512, seed).astype(np.float64))
    metadata = Metadata(
        name=name,
        version=version,
        created_at=datetime.now(UTC).isoformat(),
        inputs=[TensorSpec(name="pixels", dtype="float32", shape=["batch", NUM_FEATURES])],
        outputs=[TensorSpec(name="probabilities", dtype="float32", shape=["batch", NUM_CLASSES])],
        preprocessing=Preprocessing(),
        labels=[str(i) for i in range(NUM_CLASSES)],
        metrics={"test_accuracy": {"fp32": 0.1, "int8": 0.1}},
        parity=Parity(max_abs_diff=0.0, argmax_agreement=1.0),
        files={
            FP32_FILE: FileInfo(sha256=sha256_file(fp32), bytes=fp32.stat().st_size),
            INT8_FILE: FileInfo(sha256=sha256_file(int8), bytes=int8.stat().st_size),
        },
        versions={"onnx": onnx.__version__},
        training_stats=stats,
        training={"source": "tests/support/tiny_model.py (random weights)"},
        prediction_reference=prediction_reference(reference_probabilities(model, seed)),
    )
    dump_metadata(metadata, directory / METADATA_FILE)
    return directory
