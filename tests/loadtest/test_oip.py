"""The v2 load-test bodies carry the digits, and real v2 responses pass the check (in process)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from loadtest.data import build_samples
from loadtest.oip import (
    HEADER_LENGTH,
    INFER_PATH,
    check_v2_response,
    v2_binary_body,
    v2_json_body,
    v2_samples,
)
from loadtest.schema import SchemaError
from serving.settings import Settings
from tests.conftest import AppStarter
from tests.support.tiny_model import synthetic_images


@pytest.fixture
def digits() -> np.ndarray[Any, np.dtype[np.uint8]]:
    return np.rint(synthetic_images(3, seed=21) * 255).astype(np.uint8)


def test_bodies_carry_the_digits(digits: np.ndarray[Any, np.dtype[np.uint8]]) -> None:
    as_json = json.loads(v2_json_body(digits))
    data = np.asarray(as_json["inputs"][0]["data"]).reshape(3, 784)
    np.testing.assert_array_equal(np.rint(data * 255).astype(np.uint8), digits)
    body, length = v2_binary_body(digits)
    header = json.loads(body[:length])
    assert header["inputs"][0]["parameters"]["binary_data_size"] == len(body) - length
    pixels = np.frombuffer(body[length:], dtype="<f4").reshape(3, 784)
    np.testing.assert_array_equal(np.rint(pixels * 255).astype(np.uint8), digits)
    labels = np.arange(3, dtype=np.uint8)
    (sample,) = v2_samples(build_samples(digits, labels, per_request=3))
    assert sample.labels == (0, 1, 2)
    assert sample.binary == body


def test_real_responses_pass_and_broken_ones_fail(
    tiny_model_repository: Path,
    digits: np.ndarray[Any, np.dtype[np.uint8]],
    app_client: AppStarter,
) -> None:
    with app_client(Settings(model_repository=tiny_model_repository)) as client:
        as_json = client.post(INFER_PATH, content=v2_json_body(digits))
        body, length = v2_binary_body(digits)
        binary = client.post(INFER_PATH, content=body, headers={HEADER_LENGTH: str(length)})
        v1 = client.post("/v1/predict", content=digits.tobytes(),
                         headers={"content-type": "application/octet-stream"})  # fmt: skip
    expected = [p["label"] for p in v1.json()["predictions"]]
    assert check_v2_response(as_json.content, None, 3) == expected
    assert check_v2_response(binary.content, binary.headers[HEADER_LENGTH], 3) == expected
    with pytest.raises(SchemaError):
        check_v2_response(as_json.content, None, 4)
    with pytest.raises(SchemaError):
        check_v2_response(b'{"outputs": []}', None, 1)
    tampered = json.loads(as_json.content)
    tampered["outputs"][1]["data"][0] = (tampered["outputs"][1]["data"][0] + 1) % 10
    with pytest.raises(SchemaError, match="most probable"):
        check_v2_response(json.dumps(tampered).encode(), None, 3)
