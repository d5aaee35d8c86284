"""``Outputs``: each row's label and confidence derived once from the probabilities, and row
slices that are views; ``QueuedRequest``'s defaults."""

from __future__ import annotations

import asyncio

import numpy as np

from serving.batching.request import Outputs, QueuedRequest, SecondOpinion

PROBABILITIES = np.array(
    [[0.1, 0.7, 0.2], [0.5, 0.2, 0.3], [0.2, 0.2, 0.6], [0.4, 0.4, 0.2]], dtype=np.float32
)


def test_of_takes_each_rows_argmax_and_its_probability() -> None:
    outputs = Outputs.of(PROBABILITIES)
    assert outputs.labels.tolist() == [1, 0, 2, 0]  # a tie goes to the lower label, as argmax
    assert outputs.confidences.tolist() == PROBABILITIES.max(axis=1).tolist()
    assert outputs.confidences.dtype == np.float32
    assert outputs.probabilities is PROBABILITIES  # kept, not copied
    assert outputs.rows == 4


def test_of_an_empty_batch_has_no_rows() -> None:
    outputs = Outputs.of(np.zeros((0, 10), dtype=np.float32))
    assert outputs.rows == 0
    assert outputs.labels.shape == outputs.confidences.shape == (0,)


def test_a_slice_is_those_rows_of_all_three_arrays_as_views() -> None:
    outputs = Outputs.of(PROBABILITIES)
    part = outputs.slice(1, 3)
    assert part.rows == 2
    assert part.probabilities.tolist() == PROBABILITIES[1:3].tolist()
    assert part.labels.tolist() == [0, 2]
    assert part.confidences.tolist() == outputs.confidences[1:3].tolist()
    for whole, view in zip(outputs[:3], part[:3], strict=True):
        assert np.shares_memory(whole, view)  # no copy per request of a batch
    assert part.second is None


def test_a_slice_takes_the_same_rows_of_a_rollouts_second_opinion() -> None:
    other = Outputs.of(PROBABILITIES[::-1].copy())
    failed = SecondOpinion("3", None, 0.5, RuntimeError("candidate failed"))
    outputs = Outputs.of(PROBABILITIES)._replace(second=SecondOpinion("2", other, 0.25))
    part = outputs.slice(2, 4)
    assert part.second is not None
    assert (part.second.version, part.second.seconds) == ("2", 0.25)
    assert part.second.outputs is not None
    assert part.second.outputs.labels.tolist() == other.labels[2:4].tolist()
    broken = outputs._replace(second=failed).slice(0, 1).second
    assert broken is not None
    assert (broken.outputs, broken.error) == (None, failed.error)  # a failure stays a failure


def test_a_queued_request_starts_without_trace_context_or_version() -> None:
    async def make() -> QueuedRequest:
        future: asyncio.Future[Outputs] = asyncio.get_running_loop().create_future()
        return QueuedRequest(PROBABILITIES, 4, 1.0, 2.0, future)

    request = asyncio.run(make())
    assert request.trace_context is None
    assert request.model_version == ""
    assert request != QueuedRequest(  # identity, not value, equality: requests are distinct
        request.pixels, 4, 1.0, 2.0, request.future
    )
