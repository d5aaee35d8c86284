"""A gRPC call's access stage: the key read from the ``authorization`` call metadata, checked by
the pipeline's guard (the HTTP doors' own), and a refusal raised as the status a gRPC client
expects, with the wait of a rate limit carried as retry info."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest

from serving.access.guard import Guard
from serving.access.keys import parse_keys
from serving.batching import QueuedRequest, RejectReason
from serving.grpc.access import CallAccess, authorization, metadata
from serving.grpc.errors import StatusError
from serving.lifecycle import Service
from serving.pipeline import Pipeline
from serving.settings import Settings

KEYS = parse_keys(
    b'[[keys]]\nname = "reader"\nkey = "reader-key-0123"\nscopes = ["read"]\n'
    b'[[keys]]\nname = "limited"\nkey = "limited-key-0123"\nscopes = ["infer"]\n'
    b"rate_per_s = 0.001\nburst = 1\n"
)


class Context:
    """What CallAccess reads of a ``grpc.aio.ServicerContext``: the invocation metadata."""

    def __init__(self, *pairs: tuple[str, str | bytes]) -> None:
        self.pairs = pairs

    def invocation_metadata(self) -> Sequence[tuple[str, str | bytes]]:
        return self.pairs


class Rejections:
    def __init__(self) -> None:
        self.reasons: list[RejectReason] = []

    def on_rejected(
        self, reason: RejectReason, rows: int, request: QueuedRequest | None = None
    ) -> None:
        self.reasons.append(reason)

    def __getattr__(self, name: str) -> Any:  # the other hooks: not called by the access stage
        raise AssertionError(f"unexpected hook {name}")


@pytest.fixture
def access(tiny_model_repository: Path) -> tuple[CallAccess, Rejections]:
    rejections = Rejections()
    service = Service(Settings(model_repository=tiny_model_repository), observer=rejections)
    pipeline = Pipeline(service, lambda labels, confidences, version: [], guard=Guard(KEYS))
    return CallAccess(pipeline), rejections


def test_the_key_is_read_from_the_authorization_metadata() -> None:
    context: Any = Context(("x-other", "1"), ("authorization", b"Bearer abc"))
    assert authorization(context) == "Bearer abc"  # binary values decoded
    assert metadata(context, "x-other") == "1"
    assert metadata(context, "x-missing") is None
    assert authorization(Context()) is None  # type: ignore[arg-type]


def test_an_allowed_call_gets_its_keys_decision(access: tuple[CallAccess, Rejections]) -> None:
    calls, rejections = access
    reader: Any = Context(("authorization", "Bearer reader-key-0123"))
    decision = calls.check(reader, "read")
    assert decision.allowed
    assert decision.key_name == "reader"
    assert calls.check(Context(), "read").key_name == "anonymous"  # type: ignore[arg-type]
    assert rejections.reasons == []


@pytest.mark.parametrize(
    ("key", "scope", "code", "reason"),
    [
        (None, "admin", grpc.StatusCode.UNAUTHENTICATED, "missing_key"),
        ("Bearer nobody-0123", "read", grpc.StatusCode.UNAUTHENTICATED, "invalid_key"),
        ("Bearer reader-key-0123", "infer", grpc.StatusCode.PERMISSION_DENIED, "forbidden"),
    ],
)
def test_a_refusal_is_its_grpc_status_and_counted(
    access: tuple[CallAccess, Rejections],
    key: str | None,
    scope: Any,
    code: grpc.StatusCode,
    reason: RejectReason,
) -> None:
    calls, rejections = access
    context: Any = Context(*([("authorization", key)] if key else []))
    with pytest.raises(StatusError) as raised:
        calls.check(context, scope)
    assert raised.value.code == code
    assert raised.value.retry_after_s is None
    assert rejections.reasons == [reason]


def test_a_key_over_its_rate_is_told_when_to_come_back(
    access: tuple[CallAccess, Rejections],
) -> None:
    calls, rejections = access
    limited: Any = Context(("authorization", "Bearer limited-key-0123"))
    assert calls.check(limited, "infer").allowed  # the burst of one
    with pytest.raises(StatusError) as raised:
        calls.check(limited, "infer")
    assert raised.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    wait = raised.value.retry_after_s
    assert wait is not None
    assert wait >= 1  # the guard's Retry-After, as retry info
    assert f"retry after {wait} s" in raised.value.message
    assert rejections.reasons == ["rate_limited"]
