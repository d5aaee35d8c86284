"""Aberrant inputs are counted: refused values by reason, accepted blank or saturated images."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from serving.settings import Settings
from tests.conftest import AppStarter
from tests.support.tiny_model import synthetic_images


def counters(text: str, name: str) -> dict[str, float]:
    return {
        s.labels["reason"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def test_rejected_and_aberrant_inputs_are_counted_by_reason(
    settings: Settings, app_client: AppStarter
) -> None:
    good = synthetic_images(1)[0].tolist()
    bodies = {
        "non_finite": b'{"instances": [[' + b"1e999," * 783 + b"0]]}",
        "out_of_range": b'{"instances": [[' + b"2.0," * 783 + b"0]]}",
        "wrong_size": b'{"instances": [[' + b"0.5," * 699 + b"0]]}",
        "wrong_type": b'{"instances": [[' + b'"a",' * 783 + b"0]]}",
    }
    with app_client(settings) as client:
        for body in bodies.values():
            response = client.post(
                "/v1/predict", content=body, headers={"content-type": "application/json"}
            )
            assert response.status_code == 422
        client.post("/v1/predict", content=b"\x01" * 784 * 3, headers={"content-type": "x"})
        blank = [[0.0] * 784] * 2
        inverted = [[1.0 - v for v in good]] * 3
        response = client.post("/v1/predict", json={"instances": [good, *blank, *inverted]})
        assert response.status_code == 200
        text = client.get("/metrics").text
    assert counters(text, "inference_rejected_inputs_total") == dict.fromkeys(bodies, 1.0)
    assert counters(text, "inference_aberrant_inputs_total") == {"near_blank": 2, "saturated": 3}
