"""TEMPORARY: ModelInfer's way to the batcher until the request pipeline lands.

The request pipeline (admit -> decode -> batch -> encode -> observe, being written in serving/)
will replace :func:`infer_on_batcher` with one call, the gRPC codec (serving/grpc/codec.py) being
one more of its codecs; the pipeline then also brings what this shortcut lacks: deadline-aware
admission (shedding a call whose estimated wait exceeds its deadline, ``overloaded``), a span per
call and request metrics with ``protocol="grpc"``. Until then this function is the whole path,
and nothing else in serving/grpc/ reaches the batcher.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from serving.grpc.codec import Contract, decode_infer_request, encode_infer_response, timeout_s
from serving.grpc.generated import grpc_service_pb2 as pb
from serving.lifecycle import Service

#: One feedback id per output row (``serving.feedback.loop.Feedback.ids_for``).
IdsFor = Callable[[Any, str], list[str]]


async def infer_on_batcher(
    service: Service,
    request: pb.ModelInferRequest,
    arrived: float,
    remaining_s: float | None,
    ids_for: IdsFor | None,
) -> pb.ModelInferResponse:
    """Admit, decode, queue, wait, encode: the answer to ``request``, which arrived at monotonic
    ``arrived`` with ``remaining_s`` left of its gRPC deadline (None: no deadline).

    Raises the service's exceptions (``NotReadyError``, ``DrainingError``,
    ``UnknownVersionError``, the batcher's) and the codec's ``StatusError``; the servicer maps
    them to status codes. Cancelling the awaiting task (the client went away) drops the request
    from the queue before its batch runs.
    """
    settings = service.settings
    batcher, model = service.admit(request.model_version or None)
    contract = Contract(model.input_name, model.output_name, settings.max_instances)
    pixels, options = decode_infer_request(request, contract)
    timeout = timeout_s(
        options,
        remaining_s,
        settings.request_timeout_ms / 1000.0,
        settings.max_request_timeout_ms / 1000.0,
    )
    # Anchored at arrival, where ``remaining_s`` was read: decoding spends the same budget.
    probabilities = await batcher.submit(pixels, arrived + timeout)
    ids = ids_for(probabilities, model.version) if ids_for is not None else None
    return encode_infer_response(
        probabilities,
        probabilities.argmax(axis=1),
        options,
        model.name,
        model.version,
        model.output_name,
        ids,
    )
