"""Outcomes -> gRPC statuses, and the retry info an UNAVAILABLE carries."""

from __future__ import annotations

import google.rpc.error_details_pb2 as error_details_pb2
import google.rpc.status_pb2 as status_pb2
import grpc
import pytest

from serving.batching import (
    DeadlineExceededError,
    DrainingError,
    InferenceError,
    QueueFullError,
)
from serving.grpc.errors import (
    PUSHBACK_KEY,
    STATUS_DETAILS_KEY,
    StatusError,
    refused,
    status_for,
)
from serving.lifecycle import NotReadyError, UnknownVersionError
from serving.pipeline.admission import InfeasibleDeadlineError


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (UnknownVersionError("no served version '3'"), grpc.StatusCode.NOT_FOUND),
        (NotReadyError("not loaded yet"), grpc.StatusCode.UNAVAILABLE),
        (DrainingError("shutting down"), grpc.StatusCode.UNAVAILABLE),
        (QueueFullError("queue full"), grpc.StatusCode.UNAVAILABLE),
        (DeadlineExceededError("deadline passed"), grpc.StatusCode.DEADLINE_EXCEEDED),
        (InferenceError("inference failed: X"), grpc.StatusCode.INTERNAL),
    ],
)
def test_service_exceptions_map_to_codes_keeping_their_message(
    exc: Exception, code: grpc.StatusCode
) -> None:
    status = status_for(exc)
    assert status is not None
    assert status.code is code
    assert str(exc) in status.message
    assert (status.retry_after_s is not None) == (code is grpc.StatusCode.UNAVAILABLE)


def test_anything_else_is_not_mapped_and_a_status_error_is_itself() -> None:
    assert status_for(ValueError("bug")) is None
    error = StatusError(grpc.StatusCode.PERMISSION_DENIED, "no")
    assert status_for(error) is error
    assert error.trailers() == ()


class OverloadedError(QueueFullError):
    retry_after_s = 7


def test_an_estimate_of_the_wait_becomes_the_retry_info() -> None:
    status = status_for(OverloadedError("estimated wait exceeds the deadline"))
    assert status is not None
    assert status.retry_after_s == 7
    assert status.message.endswith("(retry after 7 s)")
    trailers = dict(status.trailers())
    assert trailers[PUSHBACK_KEY] == "7000"
    raw = trailers[STATUS_DETAILS_KEY]
    assert isinstance(raw, bytes)  # a -bin key: binary metadata
    details = status_pb2.Status.FromString(raw)
    # What grpcio-status checks before trusting the details: the same code and message.
    assert (details.code, details.message) == (grpc.StatusCode.UNAVAILABLE.value[0], status.message)
    retry = error_details_pb2.RetryInfo()
    assert details.details[0].Unpack(retry)
    assert retry.retry_delay.seconds == 7


def test_not_ready_and_draining_say_one_second() -> None:
    for exc in (NotReadyError("not loaded yet"), DrainingError("shutting down")):
        status = status_for(exc)
        assert status is not None
        assert status.retry_after_s == 1


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (401, grpc.StatusCode.UNAUTHENTICATED),
        (403, grpc.StatusCode.PERMISSION_DENIED),
        (429, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (400, grpc.StatusCode.INVALID_ARGUMENT),
        (422, grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_http_refusals_have_their_grpc_twin(status: int, code: grpc.StatusCode) -> None:
    error = refused(status, "why", retry_after_s=3 if status == 429 else None)
    assert error.code is code
    assert (error.retry_after_s is not None) == (status == 429)


def test_an_infeasible_deadline_is_a_deadline_problem_for_grpc() -> None:
    status = status_for(InfeasibleDeadlineError("the request's timeout is too short"))
    assert status is not None
    assert status.code is grpc.StatusCode.DEADLINE_EXCEEDED
