"""``POST /v1/feedback`` (true labels for earlier predictions) and ``GET /v1/quality``.

Both touch the shared SQLite store, so the work runs in a thread: a worker's event loop never
waits on another worker's write lock.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio
import msgspec
from litestar import Request, Response, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, Operation, RequestBody, Schema
from litestar.openapi.spec.enums import OpenAPIType
from litestar.params import Parameter

from serving.api.schemas import ErrorBody
from serving.feedback.loop import (
    Feedback,
    LabelOffer,
    ModelQuality,
    QualityReport,
    served_test_accuracy,
)
from serving.lifecycle import Service
from serving.pipeline.errors import InvalidInputError, MalformedBodyError

MAX_ITEMS = 1000
#: Model versions are 32-bit in prediction ids (serving/feedback/ids.py) and SQLite integers.
MAX_VERSION = 2**31 - 1
JSON = "application/json"


class _Offer(msgspec.Struct, forbid_unknown_fields=True):
    prediction_id: Annotated[str, msgspec.Meta(max_length=256)]
    label: Annotated[int, msgspec.Meta(ge=0, le=9)]


class _FeedbackBody(msgspec.Struct, forbid_unknown_fields=True):
    feedback: Annotated[list[_Offer], msgspec.Meta(min_length=1, max_length=MAX_ITEMS)]


class FeedbackResponse(msgspec.Struct):
    accepted: int
    duplicates: int
    unknown: int


_decoder = msgspec.json.Decoder(_FeedbackBody)
_encoder = msgspec.json.Encoder()


class _FeedbackOperation(Operation):
    def __post_init__(self) -> None:
        offer = Schema(
            type=OpenAPIType.OBJECT,
            required=["prediction_id", "label"],
            properties={
                "prediction_id": Schema(type=OpenAPIType.STRING, max_length=256),
                "label": Schema(type=OpenAPIType.INTEGER, minimum=0, maximum=9),
            },
        )
        body = Schema(
            type=OpenAPIType.OBJECT,
            required=["feedback"],
            properties={
                "feedback": Schema(
                    type=OpenAPIType.ARRAY, items=offer, min_items=1, max_items=MAX_ITEMS
                )
            },
        )
        self.request_body = RequestBody(
            required=True, content={JSON: OpenAPIMediaType(schema=body)}
        )


def decode_feedback(body: bytes) -> list[LabelOffer]:
    """The offered labels; 400 for a body that is not JSON, 422 for one of the wrong shape."""
    try:
        decoded = _decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise InvalidInputError(f"invalid feedback body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise MalformedBodyError(f"malformed JSON body: {exc}") from None
    return [LabelOffer(item.prediction_id, item.label) for item in decoded.feedback]


def build_quality_handlers(service: Service, feedback: Feedback) -> list[HTTPRouteHandler]:
    errors = {
        400: ResponseSpec(ErrorBody, generate_examples=False, description="Not JSON"),
        422: ResponseSpec(ErrorBody, generate_examples=False, description="Invalid items"),
    }

    @post(
        "/v1/feedback",
        status_code=200,
        summary="Send true labels for earlier predictions",
        description=f"1 to {MAX_ITEMS} items of prediction_id (from a /v1/predict answer) and "
        "the true label. Labels for an id already labelled are duplicates; expired, forged or "
        "malformed ids are unknown.",
        operation_class=_FeedbackOperation,
        responses={
            200: ResponseSpec(FeedbackResponse, generate_examples=False, description="Counts"),
            **errors,
        },
    )
    async def receive_feedback(request: Request[Any, Any, Any]) -> Response[bytes]:
        offers = decode_feedback(await request.body())
        outcome = await anyio.to_thread.run_sync(feedback.receive, offers)
        answer = FeedbackResponse(len(outcome.accepted), outcome.duplicates, outcome.unknown)
        return Response(_encoder.encode(answer), media_type=JSON)

    @get(
        "/v1/quality",
        summary="Accuracy, F1 and confusion over the last labelled predictions (whole service, "
        "or those one version answered)",
        description="version: only the predictions that model version answered (during a "
        "rollout: stable's or the canary's); the model field then names that version.",
        responses={
            200: ResponseSpec(QualityReport, generate_examples=False, description="Quality"),
            400: ResponseSpec(ErrorBody, generate_examples=False, description="Bad version"),
        },
    )
    async def quality(
        version: Annotated[int | None, Parameter(ge=1, le=MAX_VERSION, required=False)] = None,
    ) -> Response[bytes]:
        model = model_quality(service, None if version is None else str(version))
        report = await anyio.to_thread.run_sync(feedback.report, model, version)
        return Response(_encoder.encode(report), media_type=JSON)

    return [receive_feedback, quality]


def model_quality(service: Service, version: str | None = None) -> ModelQuality | None:
    """The served model (or served ``version``) and its test accuracy for the served variant
    (None before loading, or for a version not served)."""
    model = service.model
    if version is not None:
        model = next((m for m in service.served_models() if m.version == version), None)
    if model is None:
        return None
    return ModelQuality(
        model.name, model.version, served_test_accuracy(model.metadata.test_accuracy, model.variant)
    )
