"""What a door's codec does, and the two HTTP codecs (v1, OIP v2) behind one interface.

A codec turns a request's head and body into pixels (decode), and the model's outputs or an
error into an answer (encode). It knows its wire format and nothing else: admission, the
batcher, ids and observation are the pipeline's, the same for every codec.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import serving.pipeline.oip as oip
import serving.pipeline.v1 as v1
from serving.batching import Outputs
from serving.pipeline.contract import Contract
from serving.pipeline.errors import Status
from serving.pipeline.head import RequestHead
from serving.pipeline.pixels import Array

JSON = b"application/json"


class Decoded(Protocol):
    """What a codec keeps of a request body."""

    @property
    def pixels(self) -> Array: ...

    @property
    def timeout_s(self) -> float | None:
        """A deadline the body itself sets (OIP ``parameters.timeout``), in seconds."""


@dataclass(frozen=True, slots=True)
class Answer:
    """A complete HTTP answer: status, content type, body and any other headers."""

    status: int
    body: bytes
    content_type: bytes = JSON
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


class HttpCodec(Protocol):
    #: The protocol label of metrics and spans.
    name: str
    #: Whether ``X-Request-Timeout-Ms`` sets the deadline (OIP puts it in the body).
    timeout_header: bool

    def expected_rows(self, head: RequestHead, features: int) -> int:
        """A lower bound of the rows the body holds, from the headers alone."""

    def decode(self, head: RequestHead, body: bytes, contract: Contract, limit: int) -> Decoded:
        """Validated pixels; raises the pipeline's ``ApiError``s only."""

    def encode(
        self, outputs: Outputs, decoded: Decoded, contract: Contract, ids: list[str]
    ) -> Answer: ...

    def error(self, status: Status, request_id: str) -> Answer: ...


class V1Codec:
    """``POST /v1/predict``: JSON, raw uint8 or PNG in; predictions as JSON out."""

    name = v1.NAME
    timeout_header = True

    def expected_rows(self, head: RequestHead, features: int) -> int:
        return v1.expected_rows(head, features)

    def decode(self, head: RequestHead, body: bytes, contract: Contract, limit: int) -> Decoded:
        return v1.decode(head, body, contract)

    def encode(
        self, outputs: Outputs, decoded: Decoded, contract: Contract, ids: list[str]
    ) -> Answer:
        model = v1.ModelRef(contract.model_name, contract.model_version)
        return Answer(200, v1.encode(outputs, model, ids))

    def error(self, status: Status, request_id: str) -> Answer:
        return Answer(status.code, v1.error(status, request_id))


class OipCodec:
    """OIP v2 ``POST /v2/models/{name}[/versions/{version}]/infer``: JSON or binary tensors."""

    name = oip.NAME
    timeout_header = False

    def expected_rows(self, head: RequestHead, features: int) -> int:
        return oip.expected_rows(head, features)

    def decode(self, head: RequestHead, body: bytes, contract: Contract, limit: int) -> Decoded:
        return oip.decode(head, body, contract, limit)

    def encode(
        self, outputs: Outputs, decoded: Decoded, contract: Contract, ids: list[str]
    ) -> Answer:
        assert isinstance(decoded, oip.Request)
        encoded = oip.encode(outputs, decoded, contract, ids)
        if encoded.header_length is None:
            return Answer(200, encoded.body)
        length = (b"inference-header-content-length", b"%d" % encoded.header_length)
        return Answer(200, encoded.body, oip.BINARY, [length])

    def error(self, status: Status, request_id: str) -> Answer:
        code, body = oip.error(status)
        return Answer(code, body)


V1 = V1Codec()
OIP = OipCodec()
