"""Prediction ids: they round-trip, and forged, altered or expired ids are refused."""

from __future__ import annotations

import base64

import pytest

from serving.feedback.ids import ID2_CHARS, ID_CHARS, PredictionIds

KEY = b"k" * 32


def test_an_id_carries_its_prediction() -> None:
    ids = PredictionIds(KEY, horizon_s=60)
    first, second = ids.issue([3, 9], [0.25, 1.0], "7")
    assert len(first) == ID_CHARS
    assert first != second
    issued = ids.verify(first)
    assert issued is not None
    assert (issued.label, issued.model_version) == (3, 7)
    assert issued.confidence == pytest.approx(0.25, abs=1e-4)
    other = ids.verify(second)
    assert other is not None
    assert other.label == 9


def test_ids_are_unique_per_prediction() -> None:
    ids = PredictionIds(KEY, horizon_s=60)
    issued = ids.issue([1] * 1000, [0.5] * 1000, "1")
    assert len(set(issued)) == 1000


def test_another_key_or_any_altered_byte_is_refused() -> None:
    ids = PredictionIds(KEY, horizon_s=60)
    (good,) = ids.issue([4], [0.9], "1")
    assert PredictionIds(b"other", horizon_s=60).verify(good) is None
    raw = bytearray(base64.urlsafe_b64decode(good))
    for position in range(len(raw)):
        altered = bytearray(raw)
        altered[position] ^= 0x01
        text = base64.urlsafe_b64encode(bytes(altered)).decode()
        assert ids.verify(text) is None, position


@pytest.mark.parametrize(
    "text", ["", "x", "!" * ID_CHARS, "é" * ID_CHARS, "A" * ID_CHARS, "+" * ID_CHARS]
)
def test_malformed_ids_are_refused(text: str) -> None:
    assert PredictionIds(KEY, horizon_s=60).verify(text) is None


def test_ids_expire_after_the_horizon() -> None:
    ids = PredictionIds(KEY, horizon_s=60)
    (good,) = ids.issue([4], [0.9], "1")
    issued = ids.verify(good)
    assert issued is not None
    assert ids.verify(good, now=issued.issued_at + 59) is not None
    assert ids.verify(good, now=issued.issued_at + 61) is None
    assert ids.verify(good, now=issued.issued_at - 3600) is None  # dated far in the future


def test_a_format_2_id_carries_both_versions_answers_and_is_authenticated() -> None:
    """During a rollout the other version's answer rides along, so one label scores both."""
    ids = PredictionIds(KEY, horizon_s=60)
    first, second = ids.issue_pairs([3, 9], [0.25, 1.0], "2", [5, 9], [0.5, 0.75], "1")
    assert len(first) == ID2_CHARS
    issued = ids.verify(first)
    assert issued is not None
    assert (issued.label, issued.model_version) == (3, 2)
    assert (issued.second_label, issued.second_version) == (5, 1)
    assert issued.second_confidence == pytest.approx(0.5, abs=1 / 255)
    other = ids.verify(second)
    assert other is not None
    assert (other.label, other.second_label) == (9, 9)
    raw = bytearray(base64.urlsafe_b64decode(first))
    raw[21] ^= 1  # the other version's label
    assert ids.verify(base64.urlsafe_b64encode(bytes(raw)).decode()) is None
    assert PredictionIds(b"other", horizon_s=60).verify(first) is None
    # Format 1 ids are unchanged and carry no second answer.
    (plain,) = ids.issue([4], [0.9], "1")
    assert len(plain) == ID_CHARS
    verified = ids.verify(plain)
    assert verified is not None
    assert verified.second_label is None
