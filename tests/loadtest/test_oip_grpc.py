"""The gRPC load test's pieces: where it connects, the samples, and the check an answer must
pass (the Locust run itself: test_locust_run.py)."""

from __future__ import annotations

import numpy as np
import pytest

from loadtest.data import build_samples
from loadtest.oip_grpc import DEFAULT_PORT, check_outputs, grpc_samples, grpc_target
from loadtest.schema import SchemaError
from tests.support.tiny_model import synthetic_images


def test_target_defaults_to_the_http_host_on_8001() -> None:
    assert grpc_target("", "http://10.0.0.5:8000") == f"10.0.0.5:{DEFAULT_PORT}"
    assert grpc_target("", None) == f"127.0.0.1:{DEFAULT_PORT}"
    assert grpc_target("svc:9001", "http://10.0.0.5:8000") == "svc:9001"


def test_samples_carry_the_digits_as_fp32() -> None:
    digits = np.rint(synthetic_images(4, seed=8) * 255).astype(np.uint8)
    samples = grpc_samples(build_samples(digits, np.arange(4, dtype=np.uint8), per_request=2))
    assert [s.labels for s in samples] == [(0, 1), (2, 3)]
    assert samples[0].pixels.dtype == np.float32
    assert samples[0].pixels.shape == (2, 784)
    np.testing.assert_array_equal(np.rint(samples[1].pixels * 255).astype(np.uint8), digits[2:])


def test_an_answer_must_hold_every_prediction_with_its_argmax() -> None:
    probabilities = np.eye(10, dtype=np.float32)[[3, 7]]
    assert check_outputs(probabilities, np.array([3, 7]), 2) == [3, 7]
    with pytest.raises(SchemaError, match="most probable"):
        check_outputs(probabilities, np.array([3, 6]), 2)
    with pytest.raises(SchemaError, match="do not hold 3"):
        check_outputs(probabilities, np.array([3, 7]), 3)
    with pytest.raises(SchemaError, match="missing"):
        check_outputs(None, np.array([3, 7]), 2)
