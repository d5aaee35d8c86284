"""Which requests are predictions, through which codec, under which route template."""

from __future__ import annotations

import pytest

from serving.pipeline.codec import OIP, V1
from serving.pipeline.doors import V2_TEMPLATE, V2_VERSION_TEMPLATE, Door, find_door


@pytest.mark.parametrize(
    ("method", "path", "door"),
    [
        ("POST", "/v1/predict", Door(V1, "/v1/predict")),
        ("POST", "/v2/models/mnist/infer", Door(OIP, V2_TEMPLATE, "mnist")),
        ("POST", "/v2/models/other/infer", Door(OIP, V2_TEMPLATE, "other")),
        (
            "POST",
            "/v2/models/mnist/versions/7/infer",
            Door(OIP, V2_VERSION_TEMPLATE, "mnist", "7"),
        ),
    ],
)
def test_prediction_routes_find_their_door(method: str, path: str, door: Door) -> None:
    assert find_door(method, path) == door


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/predict"),  # Litestar answers 405
        ("POST", "/v1/predict/"),
        ("POST", "/v1/models"),
        ("POST", "/v2/models//infer"),
        ("POST", "/v2/models/mnist/versions//infer"),
        ("POST", "/v2/models/mnist/versions/1/2/infer"),
        ("POST", "/v2/models/mnist/ready/infer"),
        ("POST", "/v2/models/mnist"),
        ("POST", "/v2/repository/index"),
    ],
)
def test_everything_else_goes_to_the_routes(method: str, path: str) -> None:
    assert find_door(method, path) is None
