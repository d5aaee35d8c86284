"""The 200 response of ``POST /v1/predict``, as msgspec Structs, and the check a response must pass.

A response that is 200 but malformed is a failure: the gate must not pass a service that answers
fast with garbage.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

NUM_CLASSES = 10


class Prediction(msgspec.Struct):
    label: int
    confidence: float
    probabilities: Annotated[
        list[float], msgspec.Meta(min_length=NUM_CLASSES, max_length=NUM_CLASSES)
    ]
    #: Sent back with the true label to /v1/feedback (absent from services without feedback).
    prediction_id: str | None = None


class ModelInfo(msgspec.Struct):
    name: str
    version: str


class PredictResponse(msgspec.Struct):
    predictions: list[Prediction]
    model: ModelInfo


_decoder = msgspec.json.Decoder(PredictResponse)


class SchemaError(ValueError):
    """The body is not a valid predict response for the request that was sent."""


def check_response(body: bytes, expected_count: int) -> list[int]:
    """Validate a 200 body for a request of ``expected_count`` instances; return the labels."""
    return [p.label for p in check_predictions(body, expected_count)]


def check_predictions(body: bytes, expected_count: int) -> list[Prediction]:
    """Validate a 200 body for a request of ``expected_count`` instances; return its predictions."""
    try:
        response = _decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise SchemaError(f"schema: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise SchemaError(f"not JSON: {exc}") from exc
    if len(response.predictions) != expected_count:
        raise SchemaError(f"{len(response.predictions)} predictions for {expected_count} instances")
    for prediction in response.predictions:
        if not 0 <= prediction.label < NUM_CLASSES:
            raise SchemaError(f"label {prediction.label} out of range")
    return response.predictions
