"""Response bodies of the Litestar routes (msgspec Structs: encoded without a validation layer).

The prediction and error bodies are the v1 codec's (serving/pipeline/v1.py), re-exported here
for the routes that document or return them.
"""

from __future__ import annotations

import msgspec

from serving.pipeline.v1 import ErrorBody, ErrorDetail, ModelRef, Prediction, PredictResponse

__all__ = [
    "BatchingInfo",
    "ErrorBody",
    "ErrorDetail",
    "ModelInfo",
    "ModelRef",
    "ModelsResponse",
    "PredictResponse",
    "Prediction",
    "Status",
]


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
