from __future__ import annotations

import pytest

from training.config import MOMENTUM, OPTIMIZERS, Optimizer
from training.model import build_cnn, build_mlp, make_optimizer


def test_reference_architecture() -> None:
    model = build_mlp()
    assert [layer.name for layer in model.layers] == [
        "pixels",
        "hidden",
        "dropout",
        "probabilities",
    ]
    assert model.input_shape == (None, 784)
    assert model.output_shape == (None, 10)
    # 784*512 + 512 weights and biases, then 512*10 + 10.
    assert model.count_params() == 784 * 512 + 512 + 512 * 10 + 10
    assert model.get_layer("dropout").rate == 0.2
    assert model.get_layer("probabilities").activation.__name__ == "softmax"
    assert model.loss == "sparse_categorical_crossentropy"


def test_cnn_takes_the_same_flat_input() -> None:
    model = build_cnn()
    assert model.input_shape == (None, 784)
    assert model.output_shape == (None, 10)
    assert model.get_layer("image").output.shape == (None, 28, 28, 1)
    assert [layer.filters for layer in model.layers if hasattr(layer, "filters")] == [32, 64]
    assert model.get_layer("probabilities").activation.__name__ == "softmax"
    assert model.loss == "sparse_categorical_crossentropy"


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_names_map_to_keras_optimizers(name: Optimizer) -> None:
    optimizer = make_optimizer(name, 0.05)
    expected = {"adam": "Adam", "sgd": "SGD", "momentum": "SGD", "rmsprop": "RMSprop"}[name]
    assert type(optimizer).__name__ == expected
    assert float(optimizer.learning_rate) == pytest.approx(0.05)
    if expected == "SGD":
        assert optimizer.momentum == (MOMENTUM if name == "momentum" else 0.0)
