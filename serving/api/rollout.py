"""``GET /v1/rollout`` (the model's rollout: state, evidence, rule outcomes, history) and the
admin calls ``POST /v1/rollout/promote`` and ``POST /v1/rollout/rollback`` (docs/rollout.md).

The store is the SQLite file every worker shares, so any worker answers the same, and the work
runs in a thread. An admin decision is applied by this worker at once (a version refresh); the
others apply it within a second (serving/rollout_service.py, ``TICK_S``).
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

from serving.api.schemas import ErrorBody
from serving.lifecycle import Service
from serving.pipeline.errors import ApiError, InvalidInputError, MalformedBodyError
from serving.rollout.report import RolloutReport
from serving.rollout_service import RolloutService

JSON = "application/json"


class ConflictError(ApiError):
    """No rollout is running: there is nothing to promote or roll back (409)."""

    status_code = 409


class _Decision(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]


_decoder = msgspec.json.Decoder(_Decision)
_encoder = msgspec.json.Encoder()


class _DecisionOperation(Operation):
    def __post_init__(self) -> None:
        body = Schema(
            type=OpenAPIType.OBJECT,
            required=["reason"],
            properties={"reason": Schema(type=OpenAPIType.STRING, min_length=1, max_length=500)},
        )
        self.request_body = RequestBody(
            required=True, content={JSON: OpenAPIMediaType(schema=body)}
        )


def decode_decision(body: bytes) -> str:
    """The reason of an admin decision; 400 for a body that is not JSON, 422 for a bad shape."""
    try:
        return _decoder.decode(body).reason
    except msgspec.ValidationError as exc:
        raise InvalidInputError(f"invalid body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise MalformedBodyError(f"malformed JSON body: {exc}") from None


def build_rollout_handlers(service: Service, rollout: RolloutService) -> list[HTTPRouteHandler]:
    report_spec = ResponseSpec(RolloutReport, generate_examples=False, description="The rollout")
    errors = {
        400: ResponseSpec(ErrorBody, generate_examples=False, description="Not JSON"),
        409: ResponseSpec(ErrorBody, generate_examples=False, description="No rollout running"),
        422: ResponseSpec(ErrorBody, generate_examples=False, description="No reason"),
    }

    @get(
        "/v1/rollout",
        summary="The model's rollout: stable, candidate, share, evidence, rule outcomes, history",
        responses={200: report_spec},
    )
    async def rollout_report() -> Response[bytes]:
        current = await anyio.to_thread.run_sync(rollout.report)
        return Response(_encoder.encode(current), media_type=JSON)

    async def decide(request: Request[Any, Any, Any], promote: bool) -> Response[bytes]:
        reason = decode_decision(await request.body())
        change = rollout.promote if promote else rollout.rollback
        before = await anyio.to_thread.run_sync(rollout.report)
        if not before.running:
            raise ConflictError("no rollout is running: nothing to promote or roll back")
        await anyio.to_thread.run_sync(change, reason)
        await service.versions_set.refresh()  # this worker applies it now
        current = await anyio.to_thread.run_sync(rollout.report)
        return Response(_encoder.encode(current), media_type=JSON)

    @post(
        "/v1/rollout/promote",
        status_code=200,
        summary="Make the candidate stable now (admin)",
        description='Body {"reason": "..."}; the decision is in the history with by "admin".',
        operation_class=_DecisionOperation,
        responses={200: report_spec, **errors},
    )
    async def promote(request: Request[Any, Any, Any]) -> Response[bytes]:
        return await decide(request, promote=True)

    @post(
        "/v1/rollout/rollback",
        status_code=200,
        summary="Roll the candidate back now (admin): refused, with the reason",
        description='Body {"reason": "..."}; the candidate is UNAVAILABLE in the repository '
        "index until its files change.",
        operation_class=_DecisionOperation,
        responses={200: report_spec, **errors},
    )
    async def rollback(request: Request[Any, Any, Any]) -> Response[bytes]:
        return await decide(request, promote=False)

    return [rollout_report, promote, rollback]
