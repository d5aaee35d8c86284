"""The two architectures behind one IO contract, and the optimizers they can be trained with.

- ``mlp`` (the reference): Input 784 -> Dense 512 relu -> Dropout 0.2 -> Dense 10 softmax.
- ``cnn``: Input 784 -> Reshape 28x28x1 -> [Conv 3x3 relu -> MaxPool 2] x2 (32, 64 filters)
  -> Flatten -> Dropout 0.5 -> Dense 128 relu -> Dropout 0.5 -> Dense 10 softmax.

Both take the flat ``pixels`` vector, so the exported graphs have the same input and the
service serves either unchanged; the CNN's reshape lives inside its graph. Built with the
Functional API (tf2onnx's Keras path fails on Sequential models under Keras 3; export goes
through a ``tf.function`` anyway, see ``training.export``). Keras is imported inside the
functions, so the constants can be imported without TensorFlow.
"""

from __future__ import annotations

from typing import Any

from training.config import MOMENTUM, Arch, Optimizer

INPUT_NAME = "pixels"
OUTPUT_NAME = "probabilities"
NUM_FEATURES = 784
NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28, 1)


def make_optimizer(name: Optimizer, learning_rate: float, decay_steps: int | None = None) -> Any:
    """A Keras optimizer by its command-line name (``momentum`` is SGD with momentum 0.9).

    With ``decay_steps`` the rate starts at ``learning_rate`` and follows a half cosine down to 0
    at step ``decay_steps`` (Keras ``CosineDecay``, ``alpha=0``); without it, it stays constant.
    """
    import keras

    rate: Any = learning_rate
    if decay_steps is not None:
        rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=decay_steps)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=rate)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=rate)
    if name == "momentum":
        return keras.optimizers.SGD(learning_rate=rate, momentum=MOMENTUM)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=rate)
    raise ValueError(f"unknown optimizer {name!r}")


def _compile(
    model: Any, optimizer: Optimizer, learning_rate: float, decay_steps: int | None
) -> Any:
    model.compile(
        optimizer=make_optimizer(optimizer, learning_rate, decay_steps),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def build_mlp(
    hidden_units: int = 512,
    dropout: float = 0.2,
    learning_rate: float = 1e-3,
    optimizer: Optimizer = "adam",
    decay_steps: int | None = None,
) -> Any:
    """The compiled reference MLP (sparse categorical cross-entropy, accuracy)."""
    import keras

    inputs = keras.Input(shape=(NUM_FEATURES,), name=INPUT_NAME)
    x = keras.layers.Dense(hidden_units, activation="relu", name="hidden")(inputs)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", name=OUTPUT_NAME)(x)
    model = keras.Model(inputs, outputs, name="mnist_mlp")
    return _compile(model, optimizer, learning_rate, decay_steps)


def build_cnn(
    learning_rate: float = 1e-3, optimizer: Optimizer = "adam", decay_steps: int | None = None
) -> Any:
    """The compiled small CNN, taking the same flat 784-pixel input as the MLP."""
    import keras

    layers = keras.layers
    inputs = keras.Input(shape=(NUM_FEATURES,), name=INPUT_NAME)
    x = layers.Reshape(IMAGE_SHAPE, name="image")(inputs)
    x = layers.Conv2D(32, 3, activation="relu", name="conv1")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(64, 3, activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(0.5, name="dropout1")(x)
    x = layers.Dense(128, activation="relu", name="hidden")(x)
    x = layers.Dropout(0.5, name="dropout2")(x)
    outputs = layers.Dense(NUM_CLASSES, activation="softmax", name=OUTPUT_NAME)(x)
    model = keras.Model(inputs, outputs, name="mnist_cnn")
    return _compile(model, optimizer, learning_rate, decay_steps)


def build(
    arch: Arch,
    optimizer: Optimizer,
    learning_rate: float,
    hidden_units: int = 512,
    dropout: float = 0.2,
    decay_steps: int | None = None,
) -> Any:
    """The compiled model for ``arch``; ``hidden_units`` and ``dropout`` shape the MLP only.

    ``decay_steps`` (the run's total number of steps) turns on the cosine learning-rate decay.
    """
    if arch == "mlp":
        return build_mlp(hidden_units, dropout, learning_rate, optimizer, decay_steps)
    if arch == "cnn":
        return build_cnn(learning_rate, optimizer, decay_steps)
    raise ValueError(f"unknown arch {arch!r}")
