"""Reading a body from ASGI ``receive``: whole, and refused with 413 as soon as it passes the
limit, whether declared or counted as it arrives."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from serving.pipeline.body import read_body
from serving.pipeline.errors import ClientDisconnectedError, PayloadTooLargeError


class Messages:
    """An ASGI ``receive`` that hands out ``messages`` in order and counts the calls."""

    def __init__(self, messages: Sequence[dict[str, Any]]) -> None:
        self.messages = list(messages)
        self.calls = 0

    async def __call__(self) -> dict[str, Any]:
        self.calls += 1
        return self.messages.pop(0)


def chunks(*parts: bytes) -> Messages:
    last = len(parts) - 1
    return Messages(
        [{"type": "http.request", "body": p, "more_body": i < last} for i, p in enumerate(parts)]
    )


def read(receive: Messages, limit: int, declared: int | None = None) -> bytes:
    return asyncio.run(read_body(receive, limit, declared))  # type: ignore[arg-type]


def test_the_chunks_are_joined_in_order() -> None:
    assert read(chunks(b"ab", b"", b"cd", b"e"), limit=5) == b"abcde"


def test_a_single_chunk_is_returned_as_it_came() -> None:
    body = b"x" * 100
    assert read(chunks(body), limit=100) is body  # no join, no copy


def test_a_message_without_body_or_more_body_is_an_empty_body() -> None:
    assert read(Messages([{"type": "http.request"}]), limit=10) == b""


def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    receive = chunks(b"small")
    with pytest.raises(PayloadTooLargeError, match="larger than 10 bytes"):
        read(receive, limit=10, declared=11)
    assert receive.calls == 0  # nothing read: the client is told at once


def test_a_body_passing_the_limit_is_refused_at_the_chunk_that_passes_it() -> None:
    receive = chunks(b"12345", b"678901", b"never read")
    with pytest.raises(PayloadTooLargeError) as raised:
        read(receive, limit=10)
    assert raised.value.status_code == 413
    assert receive.calls == 2  # a chunked body that lied (or declared nothing) stops there


def test_a_body_of_exactly_the_limit_is_accepted() -> None:
    assert read(chunks(b"12345", b"67890"), limit=10, declared=10) == b"1234567890"


def test_a_client_that_leaves_mid_body_is_a_disconnect_not_an_empty_body() -> None:
    receive = Messages(
        [{"type": "http.request", "body": b"12", "more_body": True}, {"type": "http.disconnect"}]
    )
    with pytest.raises(ClientDisconnectedError) as raised:
        read(receive, limit=10)
    assert raised.value.status_code == 499
