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

import msgspec
import numpy as np

from model_repository.features import training_stats
from model_repository.layout import CURVES_FILE, FP32_FILE, INT8_FILE
from model_repository.metadata import EpochRecord, Metadata, Parity, Preprocessing, TensorSpec
from model_repository.predictions import prediction_reference
from training import evaluate, export, plots
from training.config import MOMENTUM, TrainConfig
from training.data import Mnist, holdout, scale
from training.history import EpochClock, records
from training.publish import file_infos, publish, staging_dir

__all__ = ["Fitted", "ParityError", "TrainConfig", "fit", "run"]

log = logging.getLogger(__name__)

LABELS = [str(d) for d in range(10)]
#: Rows used to measure int8 batch dependence (each is also run alone, so keep it modest).
BATCH_DEPENDENCE_ROWS = 1024


class ParityError(Exception):
    """The exported ONNX model does not reproduce the Keras model within tolerance."""


def package_versions() -> dict[str, str]:
    names = ["tensorflow-cpu", "keras", "tf2onnx", "onnx", "onnxruntime", "numpy"]
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def describe(config: TrainConfig) -> dict[str, Any]:
    """The configuration as recorded: defaults resolved, MLP-only knobs only for the MLP."""
    described: dict[str, Any] = {
        **asdict(config),
        "learning_rate": config.lr,
        "lr_schedule": config.schedule,
    }
    if config.optimizer == "momentum":
        described["momentum"] = MOMENTUM
    if config.arch != "mlp":
        del described["hidden_units"], described["dropout"]
    return described


@dataclass(frozen=True)
class Fitted:
    """A trained Keras model, the record of its run, and its per-epoch history."""

    model: Any
    summary: dict[str, Any]
    history: list[EpochRecord]

    def record(self) -> dict[str, Any]:
        """What ``metadata.training`` holds: the summary plus the history as plain data."""
        return {**self.summary, "history": msgspec.to_builtins(self.history)}


def fit(data: Mnist, config: TrainConfig) -> Fitted:
    """Train ``config.arch`` on the training images minus the validation split.

    A batch size of at least the number of fitted images is full-batch gradient descent: one
    step per epoch.
    """
    import keras

    from training.model import build

    (x_fit, y_fit), (x_val, y_val) = holdout(
        scale(data.x_train), data.y_train, config.validation_split
    )
    steps = -(-len(x_fit) // config.batch_size)
    # The cosine decay reaches 0 on the run's last step, so it needs the total number of steps.
    decay_steps = config.epochs * steps if config.schedule == "cosine" else None
    keras.utils.set_random_seed(config.seed)
    model = build(
        config.arch,
        config.optimizer,
        config.lr,
        config.hidden_units,
        config.dropout,
        decay_steps,
    )
    log.info(
        "training %s (%d parameters) with %s, learning rate %g (%s), batch %d "
        "(%d steps/epoch), %d epochs on %d images, %d held out for validation",
        config.arch,
        model.count_params(),
        config.optimizer,
        config.lr,
        "cosine decay to 0" if decay_steps else "constant",
        config.batch_size,
        steps,
        config.epochs,
        len(x_fit),
        len(x_val),
    )
    clock = EpochClock()
    start = time.perf_counter()
    result = model.fit(
        x_fit,
        y_fit,
        batch_size=config.batch_size,
        epochs=config.epochs,
        validation_data=(x_val, y_val) if len(x_val) else None,
        callbacks=[clock.callback()],
        verbose=1 if sys.stdout.isatty() else 2,  # progress bar on a terminal, a line per epoch
    )
    seconds = time.perf_counter() - start
    history = records(result.history, clock.seconds)
    summary = {
        **describe(config),
        "parameters": int(model.count_params()),
        "train_seconds": round(seconds, 2),
        "train_examples": len(data.x_train),
        "fit_examples": len(x_fit),
        "validation_examples": len(x_val),
        "steps_per_epoch": steps,
        "final_loss": history[-1].loss,
        "final_train_accuracy": history[-1].accuracy,
        "final_val_accuracy": history[-1].val_accuracy,
        "data_source": data.source,
    }
    return Fitted(model, summary, history)


def run(data: Mnist, output: Path, name: str, config: TrainConfig) -> Path:
    """Train, export, verify and publish a new version; returns its directory."""
    fitted = fit(data, config)
    x_test = scale(data.x_test)
    keras_probs = np.asarray(
        fitted.model.predict(x_test, batch_size=1000, verbose=0), dtype=np.float32
    )

    staging = staging_dir(output, name)
    try:
        log.info("exporting to ONNX and quantizing to int8")
        proto = export.to_onnx(fitted.model)
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

        log.info("measuring int8 batch dependence and session.run timings")
        sample = x_test[:BATCH_DEPENDENCE_ROWS]
        inputs, outputs = export.tensor_specs(proto)
        plots.learning_curves(
            fitted.history,
            staging / CURVES_FILE,
            f"{name}: {config.arch}, {config.optimizer} (learning rate {config.lr:g}"
            f"{', cosine decay' if config.schedule == 'cosine' else ''}), "
            f"batch {config.batch_size}",
        )
        files = file_infos(staging, [FP32_FILE, INT8_FILE, CURVES_FILE])
        accuracy = {
            "keras": evaluate.accuracy(keras_probs, data.y_test),
            "onnx": evaluate.accuracy(onnx_probs, data.y_test),
            "onnx_int8": evaluate.accuracy(int8_probs, data.y_test),
        }
        metrics: dict[str, object] = {
            "test_accuracy": accuracy,
            "int8_accuracy_drop": accuracy["onnx"] - accuracy["onnx_int8"],
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
            "op_types": list(export.INT8_OP_TYPES),
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
                training=fitted.record(),
                quantization=quantization,
                prediction_reference=reference,
            )

        return publish(staging, output, name, metadata_for)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
