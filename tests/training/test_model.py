from __future__ import annotations

from training.model import build_mlp


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
