"""Export, parity, int8 and metadata of a version published by the real pipeline (quick run)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from model_repository import load_metadata, sha256_file
from model_repository.layout import list_versions
from training import evaluate
from training.config import DEFAULT_LEARNING_RATE, OPTIMIZERS, Optimizer
from training.data import Mnist, scale
from training.pipeline import ParityError, TrainConfig, fit, run


def test_onnx_graph_contract(small_published: Path) -> None:
    proto = onnx.load(str(small_published / "model.onnx"))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == 17
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert inp.name == "pixels"
    assert out.name == "probabilities"
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == ["batch", 784]
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["batch", 10]


def test_dynamic_batch_runs_in_onnxruntime(small_published: Path, mnist: Mnist) -> None:
    sess = evaluate.session(small_published / "model.onnx")
    for size in (1, 7, 128):
        probs = sess.run(None, {"pixels": scale(mnist.x_test[:size])})[0]
        assert probs.shape == (size, 10)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_int8_variant_is_quantized_and_agrees(small_published: Path, mnist: Mnist) -> None:
    proto = onnx.load(str(small_published / "model.int8.onnx"))
    assert any(init.data_type == onnx.TensorProto.INT8 for init in proto.graph.initializer)
    x = scale(mnist.x_test[:2000])
    fp32 = evaluate.run(evaluate.session(small_published / "model.onnx"), x)
    int8 = evaluate.run(evaluate.session(small_published / "model.int8.onnx"), x)
    assert evaluate.agreement(fp32, int8) > 0.98


def test_metadata_describes_the_files(small_published: Path, mnist: Mnist) -> None:
    meta = load_metadata(small_published / "metadata.json")
    raw = json.loads((small_published / "metadata.json").read_text())
    for key in (
        "name",
        "version",
        "created_at",
        "inputs",
        "outputs",
        "preprocessing",
        "labels",
        "metrics",
        "parity",
        "files",
        "versions",
        "training_stats",
    ):
        assert key in raw
    assert (meta.name, meta.version) == ("mnist", int(small_published.name))
    assert meta.labels == [str(d) for d in range(10)]
    assert meta.inputs[0].shape == ["batch", 784]
    for name, info in meta.files.items():
        assert info.sha256 == sha256_file(small_published / name)
        assert info.bytes == (small_published / name).stat().st_size
    assert meta.parity.max_abs_diff <= 1e-4
    assert meta.parity.argmax_agreement == 1.0
    acc = meta.test_accuracy
    assert set(acc) == {"keras", "onnx", "onnx_int8"}
    # The recorded ONNX accuracy is the one onnxruntime gives on the same test images.
    sess = evaluate.session(small_published / "model.onnx")
    test = mnist.subset(test=2000)
    assert acc["onnx"] == pytest.approx(
        evaluate.accuracy(evaluate.run(sess, scale(test.x_test)), test.y_test)
    )
    assert 0.9 < meta.metrics["int8_agreement"] <= 1.0  # type: ignore[operator]
    stats = meta.training_stats
    assert stats.num_images == 3000
    for feature in stats.features.values():
        assert len(feature.histogram.edges) == len(feature.histogram.counts) + 1
        assert sum(feature.histogram.counts) == 3000
    dependence = meta.quantization["batch_dependence"]
    assert isinstance(dependence, dict)
    assert dependence["fp32"]["max_abs_diff"] < 1e-5
    # The prediction-drift reference: the served model's predictions on the test images.
    reference = meta.prediction_reference
    assert reference is not None
    probabilities = evaluate.run(sess, scale(test.x_test))
    assert reference.num_images == len(test.x_test)
    expected = np.bincount(probabilities.argmax(axis=1), minlength=10) / len(probabilities)
    assert reference.predicted_distribution == pytest.approx(expected.tolist())
    assert sum(reference.confidence.counts) == len(test.x_test)


def test_versions_increase_and_parity_failure_publishes_nothing(
    tmp_path: Path, mnist: Mnist
) -> None:
    tiny = mnist.subset(train=512, test=256)
    (tmp_path / "mnist" / "not-a-version").mkdir(parents=True)
    first = run(tiny, tmp_path, "mnist", TrainConfig(epochs=1))
    second = run(tiny, tmp_path, "mnist", TrainConfig(epochs=1))
    assert (first.name, second.name) == ("1", "2")
    with pytest.raises(ParityError, match="not published"):
        run(tiny, tmp_path, "mnist", TrainConfig(epochs=1, parity_tolerance=0.0))
    assert list_versions(tmp_path, "mnist") == [1, 2]
    # No staging directory is left behind.
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == ["1", "2", "not-a-version"]


def test_history_and_curves_are_published(small_published: Path) -> None:
    meta = load_metadata(small_published / "metadata.json")
    training = meta.training
    assert (training["arch"], training["optimizer"], training["learning_rate"]) == (
        "mlp",
        "adam",
        1e-3,
    )
    # 10 % of the 3000 training images are held out for validation; the rest are fitted.
    assert (training["fit_examples"], training["validation_examples"]) == (2700, 300)
    assert training["steps_per_epoch"] == 22  # ceil(2700 / 128)
    (epoch,) = meta.history
    assert epoch.epoch == 1
    assert epoch.val_loss is not None
    assert epoch.val_accuracy is not None
    assert 0.0 < epoch.val_accuracy <= 1.0
    assert 0.0 < epoch.seconds <= float(training["train_seconds"])  # type: ignore[arg-type]
    assert training["final_val_accuracy"] == epoch.val_accuracy
    assert training["lr_schedule"] == meta.lr_schedule == "cosine"
    curves = small_published / "training.png"
    assert curves.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert meta.files["training.png"].sha256 == sha256_file(curves)
    assert meta.quantization["op_types"] == ["MatMul"]
    accuracy = meta.test_accuracy
    assert meta.metrics["int8_accuracy_drop"] == pytest.approx(
        accuracy["onnx"] - accuracy["onnx_int8"]
    )


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_each_optimizer_trains(optimizer: Optimizer, mnist: Mnist) -> None:
    # A constant rate, so that the optimizer's rate after training is still its default.
    config = TrainConfig(optimizer=optimizer, epochs=2, batch_size=64, lr_schedule="constant")
    fitted = fit(mnist.subset(train=640), config)
    first, second = fitted.history
    assert second.loss < first.loss
    assert fitted.summary["optimizer"] == optimizer
    keras_optimizer = fitted.model.optimizer
    assert float(keras_optimizer.learning_rate) == pytest.approx(DEFAULT_LEARNING_RATE[optimizer])
    assert int(keras_optimizer.iterations) == 2 * fitted.summary["steps_per_epoch"] == 2 * 9
    if optimizer == "momentum":
        assert fitted.summary["momentum"] == keras_optimizer.momentum == 0.9


def test_full_batch_is_one_step_per_epoch(mnist: Mnist) -> None:
    data = mnist.subset(train=1000)
    fitted = fit(data, TrainConfig(optimizer="sgd", batch_size=900, epochs=2, validation_split=0.1))
    assert fitted.summary["steps_per_epoch"] == 1
    assert int(fitted.model.optimizer.iterations) == 2


def test_cosine_schedule_decays_the_rate_to_zero_by_the_last_step(mnist: Mnist) -> None:
    """The default schedule: the rate starts at ``--learning-rate``, is half way down at half the
    steps, and is 0 once the run's last step is taken."""
    import keras

    data = mnist.subset(train=640)
    fitted = fit(data, TrainConfig(epochs=2, batch_size=64))
    optimizer = fitted.model.optimizer
    steps = 2 * fitted.summary["steps_per_epoch"]
    assert int(optimizer.iterations) == steps == 2 * 9
    schedule = optimizer.get_config()["learning_rate"]
    assert schedule["class_name"] == "CosineDecay"
    assert schedule["config"]["initial_learning_rate"] == pytest.approx(1e-3)
    assert schedule["config"]["decay_steps"] == steps
    assert float(optimizer.learning_rate) == pytest.approx(0.0, abs=1e-12)
    rate = keras.optimizers.schedules.deserialize(schedule)  # to read it at other steps
    assert float(rate(0)) == pytest.approx(1e-3)
    assert float(rate(steps // 2)) == pytest.approx(0.5e-3)
    assert fitted.summary["lr_schedule"] == "cosine"


def test_constant_schedule_keeps_the_rate(mnist: Mnist) -> None:
    fitted = fit(mnist.subset(train=640), TrainConfig(epochs=1, lr_schedule="constant"))
    assert float(fitted.model.optimizer.learning_rate) == pytest.approx(1e-3)
    assert not isinstance(fitted.model.optimizer.get_config()["learning_rate"], dict)
    assert fitted.summary["lr_schedule"] == "constant"


def test_unknown_schedule_is_rejected() -> None:
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="step")  # type: ignore[arg-type]
