"""The reference model: Input 784 -> Dense 512 relu -> Dropout 0.2 -> Dense 10 softmax.

Built with the Functional API (tf2onnx's Keras path fails on Sequential models under Keras 3;
export goes through a ``tf.function`` anyway, see ``training.export``).
"""

from __future__ import annotations

from typing import Any

import keras

INPUT_NAME = "pixels"
OUTPUT_NAME = "probabilities"
NUM_FEATURES = 784
NUM_CLASSES = 10


def build_mlp(hidden_units: int = 512, dropout: float = 0.2, learning_rate: float = 1e-3) -> Any:
    """A compiled Keras model (Adam, sparse categorical cross-entropy, accuracy)."""
    inputs = keras.Input(shape=(NUM_FEATURES,), name=INPUT_NAME)
    x = keras.layers.Dense(hidden_units, activation="relu", name="hidden")(inputs)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", name=OUTPUT_NAME)(x)
    model = keras.Model(inputs, outputs, name="mnist_mlp")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model
