"""Response and error bodies (msgspec Structs: encoded without a validation layer)."""

from __future__ import annotations

import msgspec


class Prediction(msgspec.Struct):
    label: int
    confidence: float
    probabilities: list[float]
    #: Send it back with the true label to POST /v1/feedback.
    prediction_id: str


class ModelRef(msgspec.Struct):
    name: str
    version: str


class PredictResponse(msgspec.Struct):
    predictions: list[Prediction]
    model: ModelRef


class ErrorDetail(msgspec.Struct):
    status: int
    message: str
    request_id: str | None


class ErrorBody(msgspec.Struct):
    error: ErrorDetail


class Status(msgspec.Struct):
    status: str


class BatchingInfo(msgspec.Struct):
    max_batch_size: int
    max_batch_delay_ms: float
    max_queue_size: int
    max_instances: int
    request_timeout_ms: float


class ModelInfo(msgspec.Struct):
    name: str
    version: str
    variant: str
    sha256: str
    created_at: str
    inputs: list[dict[str, object]]
    outputs: list[dict[str, object]]
    labels: list[str]
    test_accuracy: dict[str, float]
    preprocessing: dict[str, object]
    batching: BatchingInfo


class ModelsResponse(msgspec.Struct):
    models: list[ModelInfo]
