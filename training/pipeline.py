"""The training stage end to end: data -> fit -> export -> parity -> int8 -> model repository."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import logging
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model_repository.features import training_stats
from model_repository.layout import FP32_FILE, INT8_FILE
from model_repository.metadata import Metadata, Parity, Preprocessing, TensorSpec
from model_repository.predictions import prediction_reference
from training import evaluate, export
from training.data import Mnist, scale
from training.publish import file_infos, publish, staging_dir

log = logging.getLogger(__name__)

LABELS = [str(d) for d in range(10)]
#: Rows used to measure int8 batch dependence (each is also run alone, so keep it modest).
BATCH_DEPENDENCE_ROWS = 1024


class ParityError(Exception):
    """The exported ONNX model does not reproduce the Keras model within tolerance."""


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 15
    batch_size: int = 128
    learning_rate: float = 1e-3
    hidden_units: int = 512
    dropout: float = 0.2
    seed: int = 42
    parity_tolerance: float = 1e-4


def package_versions() -> dict[str, str]:
    names = ["tensorflow-cpu", "keras", "tf2onnx", "onnx", "onnxruntime", "numpy"]
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def fit(data: Mnist, config: TrainConfig) -> tuple[Any, dict[str, Any]]:
    """Train the reference MLP; returns the model and a summary of the run."""
    import keras

    from training.model import build_mlp

    keras.utils.set_random_seed(config.seed)
    model = build_mlp(config.hidden_units, config.dropout, config.learning_rate)
    start = time.perf_counter()
    history = model.fit(
        scale(data.x_train),
        data.y_train,
        batch_size=config.batch_size,
        epochs=config.epochs,
        verbose=1
        if sys.stdout.isatty()
        else 2,  # progress bar on a terminal, a line per epoch in logs
    )
    seconds = time.perf_counter() - start
    summary = {
        **asdict(config),
        "train_seconds": round(seconds, 2),
        "train_examples": len(data.x_train),
        "final_loss": float(history.history["loss"][-1]),
        "final_train_accuracy": float(history.history["accuracy"][-1]),
        "data_source": data.source,
    }
    return model, summary


def run(data: Mnist, output: Path, name: str, config: TrainConfig) -> Path:
    """Train, export, verify and publish a new version; returns its directory."""
    model, training_summary = fit(data, config)
    x_test = scale(data.x_test)
    keras_probs = np.asarray(model.predict(x_test, batch_size=1000, verbose=0), dtype=np.float32)

    staging = staging_dir(output, name)
    try:
        proto = export.to_onnx(model)
        export.save_onnx(proto, staging / FP32_FILE)
        export.quantize_int8(staging / FP32_FILE, staging / INT8_FILE)

        fp32 = evaluate.session(staging / FP32_FILE)
        int8 = evaluate.session(staging / INT8_FILE)
        onnx_probs = evaluate.run(fp32, x_test)
        int8_probs = evaluate.run(int8, x_test)
        parity = Parity(
            max_abs_diff=evaluate.max_abs_diff(keras_probs, onnx_probs),
            argmax_agreement=evaluate.agreement(keras_probs, onnx_probs),
        )
        log.info(
            "parity: max |dp| %.2e, argmax agreement %.4f",
            parity.max_abs_diff,
            parity.argmax_agreement,
        )
        if parity.max_abs_diff > config.parity_tolerance:
            raise ParityError(
                f"ONNX output differs from Keras by {parity.max_abs_diff:.3e} "
                f"(tolerance {config.parity_tolerance:.0e}); the export is not published"
            )

        sample = x_test[:BATCH_DEPENDENCE_ROWS]
        inputs, outputs = export.tensor_specs(proto)
        files = file_infos(staging, [FP32_FILE, INT8_FILE])
        metrics: dict[str, object] = {
            "test_accuracy": {
                "keras": evaluate.accuracy(keras_probs, data.y_test),
                "onnx": evaluate.accuracy(onnx_probs, data.y_test),
                "onnx_int8": evaluate.accuracy(int8_probs, data.y_test),
            },
            "int8_agreement": evaluate.agreement(onnx_probs, int8_probs),
            "int8_max_abs_diff": evaluate.max_abs_diff(onnx_probs, int8_probs),
            "test_examples": len(x_test),
            "session_run_us": {
                "fp32": evaluate.session_run_us(fp32, x_test),
                "int8": evaluate.session_run_us(int8, x_test),
                "note": "median session.run, 1 intra-op thread, no spinning, training machine",
            },
        }
        quantization: dict[str, object] = {
            "method": "onnxruntime.quantization.quantize_dynamic",
            "weight_type": "QInt8",
            "batch_dependence": {
                "int8": evaluate.batch_dependence(int8, sample),
                "fp32": evaluate.batch_dependence(fp32, sample),
            },
        }
        stats = training_stats(scale(data.x_train))
        reference = prediction_reference(onnx_probs)
        created_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")

        def metadata_for(version: int) -> Metadata:
            return Metadata(
                name=name,
                version=version,
                created_at=created_at,
                inputs=[TensorSpec(**spec) for spec in inputs],
                outputs=[TensorSpec(**spec) for spec in outputs],
                preprocessing=Preprocessing(),
                labels=LABELS,
                metrics=metrics,
                parity=parity,
                files=files,
                versions=package_versions(),
                training_stats=stats,
                training=training_summary,
                quantization=quantization,
                prediction_reference=reference,
            )

        return publish(staging, output, name, metadata_for)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
