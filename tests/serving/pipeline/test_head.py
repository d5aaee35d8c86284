"""The one header pass: every header a stage needs, read once, raw."""

from __future__ import annotations

from serving.pipeline.head import MAX_REQUEST_ID, RequestHead, read_head, request_id


def test_one_pass_reads_every_header_the_stages_use() -> None:
    head = read_head(
        [
            (b"host", b"x"),
            (b"content-type", b"application/json"),
            (b"content-length", b"123"),
            (b"x-request-timeout-ms", b"250"),
            (b"x-request-id", b"req-1"),
            (b"content-encoding", b"gzip"),
            (b"inference-header-content-length", b"40"),
            (b"authorization", b"Bearer k"),
            (b"traceparent", b"00-abc"),
        ]
    )
    assert head == RequestHead(
        content_type=b"application/json",
        content_length=123,
        timeout=b"250",
        request_id=b"req-1",
        content_encoding=b"gzip",
        header_length=b"40",
        authorization=b"Bearer k",
        traceparent=b"00-abc",
    )


def test_a_length_that_is_not_a_number_is_unknown() -> None:
    assert read_head([(b"content-length", b"-5")]).content_length is None
    assert read_head([(b"content-length", b"12x")]).content_length is None
    assert read_head([]).content_length is None


def test_request_ids_are_the_clients_when_sane_else_generated_and_unique() -> None:
    assert request_id(b"abc-1") == "abc-1"
    generated = {request_id(raw) for raw in (None, b"", b"x" * (MAX_REQUEST_ID + 1), b"a\x00b")}
    assert len(generated) == 4
    assert all(len(value) == 32 and int(value, 16) >= 0 for value in generated)
    assert request_id(b"x" * MAX_REQUEST_ID) == "x" * MAX_REQUEST_ID
