"""Request bodies carry the real digits; responses are checked against the schema."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from loadtest.data import (
    binary_body,
    build_samples,
    decode_binary_body,
    decode_json_body,
    json_body,
    load_digits,
    mnist_dir,
)
from loadtest.schema import SchemaError, check_response


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    return load_digits(mnist_dir(), 64)


def test_real_test_digits_are_loaded(digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = digits
    assert images.shape == (64, 784)
    assert images.dtype == np.uint8
    assert labels[:3].tolist() == [7, 2, 1]  # the first MNIST test digits
    assert images.max() == 255


def test_json_and_binary_bodies_decode_to_the_same_pixels(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    images, _ = digits
    batch = images[:5]
    np.testing.assert_array_equal(decode_json_body(json_body(batch)), batch)
    np.testing.assert_array_equal(decode_binary_body(binary_body(batch)), batch)
    assert len(binary_body(batch)) == 5 * 784


def test_json_body_is_in_the_api_shape(digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, _ = digits
    decoded = msgspec.json.decode(json_body(images[:2]))
    assert list(decoded) == ["instances"]
    assert len(decoded["instances"]) == 2
    assert all(len(row) == 784 and min(row) >= 0 and max(row) <= 1 for row in decoded["instances"])


def test_samples_group_digits_with_their_labels(digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = digits
    samples = build_samples(images, labels, per_request=4)
    assert len(samples) == 16
    assert samples[0].labels == tuple(int(v) for v in labels[:4])
    np.testing.assert_array_equal(decode_binary_body(samples[1].binary), images[4:8])
    np.testing.assert_array_equal(decode_json_body(samples[1].json), images[4:8])


def _response(count: int, probabilities: int = 10, label: int = 3) -> bytes:
    prediction = {"label": label, "confidence": 0.9, "probabilities": [0.01] * probabilities}
    return msgspec.json.encode(
        {"predictions": [prediction] * count, "model": {"name": "mnist", "version": "1"}}
    )


def test_valid_response_gives_labels() -> None:
    assert check_response(_response(2), expected_count=2) == [3, 3]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_response(1), "1 predictions for 2 instances"),
        (_response(2, probabilities=9), "schema"),
        (_response(2, label=10), "out of range"),
        (b'{"predictions": [], "model": {"name": "m"}}', "schema"),
        (b"<html>busy</html>", "not JSON"),
    ],
)
def test_invalid_response_is_rejected(body: bytes, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        check_response(body, expected_count=2)
