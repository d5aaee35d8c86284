"""Keras -> ONNX with tf2onnx, and the int8 variant with onnxruntime's dynamic quantization.

tf2onnx 1.17's ``from_keras`` fails under Keras 3 (``KeyError: 'keras_tensor_N'``), so the model
is wrapped in a ``tf.function`` with an explicit input signature and converted with
``from_function``. The function returns a dict so the output is named after its key; the batch
dimension, which tf2onnx names ``unk__N``, is renamed to ``batch`` afterwards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx
from onnx.tools.update_model_dims import update_inputs_outputs_dims

from training.model import INPUT_NAME, NUM_CLASSES, NUM_FEATURES, OUTPUT_NAME

OPSET = 17
BATCH_DIM = "batch"
#: Operator types dynamic quantization turns into integer ops. Conv is left in fp32: its
#: dynamic form (ConvInteger) ran the CNN several times slower than fp32 on CPU (docs/training.md).
INT8_OP_TYPES = ("MatMul",)


def to_onnx(model: Any, opset: int = OPSET) -> onnx.ModelProto:
    """Convert a Keras model to an ONNX graph ``pixels[batch,784] -> probabilities[batch,10]``.

    Any architecture that takes the flat pixel vector converts the same way (the CNN reshapes
    inside its own graph), so both keep the service's IO contract.
    """
    import tensorflow as tf  # keep TensorFlow out of module import
    import tf2onnx

    signature = [tf.TensorSpec([None, NUM_FEATURES], tf.float32, name=INPUT_NAME)]

    @tf.function(input_signature=signature)  # type: ignore[untyped-decorator]
    def serve(pixels: Any) -> dict[str, Any]:
        return {OUTPUT_NAME: model(pixels, training=False)}

    proto, _ = tf2onnx.convert.from_function(serve, input_signature=signature, opset=opset)
    proto = update_inputs_outputs_dims(
        proto,
        {INPUT_NAME: [BATCH_DIM, NUM_FEATURES]},
        {OUTPUT_NAME: [BATCH_DIM, NUM_CLASSES]},
    )
    proto.producer_name = "training (tf2onnx)"
    proto.doc_string = (
        f"MNIST {model.name}: pixels scaled to [0, 1], row-major 28x28 -> class probabilities"
    )
    onnx.checker.check_model(proto, full_check=True)
    return proto


def save_onnx(proto: onnx.ModelProto, path: Path) -> None:
    onnx.save(proto, str(path))


def quantize_int8(fp32_path: Path, int8_path: Path) -> None:
    """Dynamic quantization with signed int8 weights (QUInt8 measured 2-3x slower here).

    Only the operator types in ``INT8_OP_TYPES`` are quantized. Activations are quantized
    at run time with a scale computed over the whole batch, which makes a row's output depend
    slightly on its batch neighbours; ``training.evaluate`` measures how much and the metadata
    records it.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(fp32_path),
        str(int8_path),
        weight_type=QuantType.QInt8,
        op_types_to_quantize=list(INT8_OP_TYPES),
    )
    onnx.checker.check_model(onnx.load(str(int8_path)), full_check=True)


def tensor_specs(proto: onnx.ModelProto) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(inputs, outputs)`` as ``{name, dtype, shape}`` dicts, dynamic dims by their name."""

    def spec(value: onnx.ValueInfoProto) -> dict[str, Any]:
        tensor = value.type.tensor_type
        shape: list[int | str | None] = [
            d.dim_param if d.dim_param else (d.dim_value if d.HasField("dim_value") else None)
            for d in tensor.shape.dim
        ]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
        return {"name": value.name, "dtype": dtype, "shape": shape}

    return [spec(v) for v in proto.graph.input], [spec(v) for v in proto.graph.output]
