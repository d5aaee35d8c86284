"""The v1 codec: every decoder, fed hostile bytes, gives a float32 array or a 4xx API error; the
answer it encodes; its error shape."""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.pipeline.contract import Contract
from serving.pipeline.errors import ApiError, MalformedBodyError
from serving.pipeline.head import RequestHead
from serving.pipeline.v1 import MAX_JSON_DEPTH, check_json_bounds
from serving.pipeline.v1 import decode as decode_v1

FEATURES = 784
CONTRACT = Contract(
    model_name="mnist",
    model_version="1",
    input_name="pixels",
    output_name="probabilities",
    features=FEATURES,
    classes=10,
    max_instances=8,
    side=28,
)


def decode(content_type: str, body: bytes, contract: Contract) -> Any:
    return decode_v1(RequestHead(content_type=content_type.encode()), body, contract).pixels


CONTENT_TYPES = ["application/json", "application/octet-stream", "image/png", "text/plain", ""]
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome(content_type: str, body: bytes) -> int:
    """200 for a decoded array, else the API error's status; anything else fails the test."""
    try:
        pixels = decode(content_type, body, CONTRACT)
    except ApiError as exc:
        status, message = exc.status_code, str(exc)
    else:
        status, message = 200, ""
    if status != 200:
        assert 400 <= status < 500, message
        assert message
        return status
    assert pixels.dtype == np.float32
    assert pixels.ndim == 2
    assert pixels.shape[1] == FEATURES
    assert 1 <= pixels.shape[0] <= CONTRACT.max_instances
    assert np.isfinite(pixels).all()
    assert ((pixels >= 0) & (pixels <= 1)).all()
    return 200


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=40,
)


@st.composite
def png_like(draw: st.DrawFn) -> bytes:
    """A PNG signature and IHDR with drawn sizes, then drawn (often broken) chunks."""
    width = draw(st.sampled_from([0, 1, 28, 29, 2**31 - 1]))
    height = draw(st.sampled_from([0, 1, 28, 2**31 - 1]))
    depth = draw(st.sampled_from([1, 8, 16, 3]))
    color = draw(st.sampled_from([0, 2, 3, 4, 6, 5]))
    header = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    data = draw(st.binary(max_size=64))
    if draw(st.booleans()):
        data = zlib.compress(data)
    body = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", data)
    if draw(st.booleans()):
        body += png_chunk(b"IEND", b"")
    cut = draw(st.integers(min_value=8, max_value=len(body)))
    return body[:cut]


@PROPERTY
@given(content_type=st.sampled_from(CONTENT_TYPES), body=st.binary(max_size=4096))
def test_arbitrary_bytes_never_escape_as_an_unexpected_exception(
    content_type: str, body: bytes
) -> None:
    outcome(content_type, body)


@PROPERTY
@given(value=json_values)
def test_arbitrary_json_gets_an_array_or_a_4xx(value: Any) -> None:
    outcome("application/json", json.dumps(value).encode())
    outcome("application/json", json.dumps({"instances": value}).encode())
    outcome("application/json", json.dumps({"instances": [value]}).encode())


@PROPERTY
@given(
    pixels=st.lists(
        st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), st.none()),
        min_size=FEATURES,
        max_size=FEATURES,
    ),
    valid_prefix=st.booleans(),
)
def test_full_size_instances_with_hostile_values(pixels: list[Any], valid_prefix: bool) -> None:
    instances = [[0.5] * FEATURES, pixels] if valid_prefix else [pixels]
    outcome("application/json", json.dumps({"instances": instances}).encode())


@PROPERTY
@given(body=png_like())
def test_png_like_data_gets_an_array_or_a_4xx(body: bytes) -> None:
    outcome("image/png", body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"instances":[[' + b",".join([b"0"] * (FEATURES - 1) + [b"9" * 400]) + b"]]}",
        b'{"instances":[[' + b"1" * 400 + b"]]}",
        b'{"instances":' + b"[" * 10_000 + b"]" * 10_000 + b"}",
        b'{"instances":[' + b'{"a":' * 5_000 + b"1" + b"}" * 5_000 + b"]}",
        b'{"instances":[["x"]], "tail": [1,}',
    ],
    ids=["400-digit-pixel", "400-digit-alone", "deep-arrays", "deep-objects", "bad-tail"],
)
def test_known_crashers_are_400(body: bytes) -> None:
    with pytest.raises(MalformedBodyError):
        decode("application/json", body, CONTRACT)


def test_bounds_allow_a_valid_body_and_refuse_one_level_too_deep() -> None:
    check_json_bounds(json.dumps({"instances": [[[0.5] * 28] * 28]}).encode())
    too_deep = b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1)
    with pytest.raises(MalformedBodyError, match="nested deeper"):
        check_json_bounds(too_deep)
