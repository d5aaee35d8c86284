"""``status_of``: the one mapping from whatever a request ends with to what the client is told
(status, message, Retry-After), shared by every door."""

from __future__ import annotations

import pytest

from serving.batching import DeadlineExceededError, DrainingError, InferenceError, QueueFullError
from serving.lifecycle import NotReadyError, UnknownVersionError
from serving.pipeline.admission import InfeasibleDeadlineError, OverloadedError
from serving.pipeline.errors import (
    RETRY_AFTER_S,
    ApiError,
    ClientDisconnectedError,
    InvalidInputError,
    MalformedBodyError,
    NotFoundError,
    PayloadTooLargeError,
    Status,
    UnsupportedMediaTypeError,
    status_of,
)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ApiError("bad"), 400),
        (MalformedBodyError("bad json"), 400),
        (InfeasibleDeadlineError("too short"), 400),
        (UnsupportedMediaTypeError("text/csv"), 415),
        (InvalidInputError("instance 3 is short"), 422),
        (NotFoundError("no such model"), 404),
        (PayloadTooLargeError("too big"), 413),
        (ClientDisconnectedError("gone"), 499),
        (UnknownVersionError("version 9 is not served"), 404),
    ],
)
def test_client_errors_keep_their_message_and_never_say_retry(error: Exception, code: int) -> None:
    assert status_of(error) == Status(code, str(error), None)


@pytest.mark.parametrize(
    "error",
    [
        NotReadyError("loading"),
        QueueFullError("queue full (4 of 4 rows waiting); retry later"),
        DrainingError("shutting down"),
    ],
)
def test_unavailable_is_503_with_the_default_retry_after(error: Exception) -> None:
    assert status_of(error) == Status(503, str(error), RETRY_AFTER_S)


def test_an_overload_refusal_carries_its_own_retry_after() -> None:
    status = status_of(OverloadedError("overloaded: 3.2 s ahead", retry_after_s=4))
    assert status == Status(503, "overloaded: 3.2 s ahead", 4)


def test_a_missed_deadline_is_504_and_a_failed_batch_500_neither_retried() -> None:
    assert status_of(DeadlineExceededError("late")) == Status(504, "late", None)
    assert status_of(InferenceError("inference failed: x")) == Status(
        500, "inference failed: x", None
    )


def test_an_unexpected_exception_is_500_without_its_message() -> None:
    """Whatever nobody expected may hold internals (paths, values): the client gets a generic
    message and quotes the request id instead."""
    status = status_of(RuntimeError("/secret/path/model.onnx: boom"))
    assert status.code == 500
    assert "secret" not in status.message
    assert "request id" in status.message
    assert status.retry_after_s is None


def test_invalid_input_keeps_a_bounded_reason_for_the_metrics() -> None:
    assert InvalidInputError("x").reason == "invalid"
    assert InvalidInputError("x", "non_finite").reason == "non_finite"
