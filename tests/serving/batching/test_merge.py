"""Merging a batch's requests into one input and splitting its outputs back, in order."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from serving.batching.merge import merge, split
from serving.batching.request import Outputs


def rows(start: int, count: int) -> npt.NDArray[np.float32]:
    return np.arange(start, start + count, dtype=np.float32)[:, None].repeat(3, axis=1)


def test_a_lone_part_is_passed_through_without_a_copy() -> None:
    part = rows(0, 4)
    assert merge([part]) is part


def test_parts_are_concatenated_in_order() -> None:
    merged = merge([rows(0, 2), rows(10, 1), rows(20, 3)])
    assert merged.shape == (6, 3)
    assert merged[:, 0].tolist() == [0, 1, 10, 20, 21, 22]


def test_split_gives_each_request_its_rows_in_order_as_views() -> None:
    probabilities = np.random.default_rng(0).random((6, 10)).astype(np.float32)
    outputs = Outputs.of(probabilities)
    parts = split(outputs, [2, 1, 3])
    assert [p.rows for p in parts] == [2, 1, 3]
    assert np.concatenate([p.labels for p in parts]).tolist() == outputs.labels.tolist()
    assert parts[1].probabilities.tolist() == probabilities[2:3].tolist()
    assert parts[2].confidences.tolist() == outputs.confidences[3:].tolist()
    assert all(np.shares_memory(p.probabilities, probabilities) for p in parts)


def test_split_of_one_request_is_the_outputs_themselves() -> None:
    outputs = Outputs.of(np.eye(3, dtype=np.float32))
    (only,) = split(outputs, [3])
    assert only is outputs


def test_merge_then_split_round_trips_each_request() -> None:
    parts = [rows(0, 1), rows(5, 4), rows(9, 2)]
    merged = merge(parts)
    outputs = Outputs(merged, np.arange(7), merged[:, 0])
    back = split(outputs, [len(p) for p in parts])
    assert [b.probabilities.tolist() for b in back] == [p.tolist() for p in parts]
