"""The request path of every prediction, stage by stage, whatever door it came through.

    arrive   access (the route's scope and the key, serving/access/guard.py: 401/403/429); the
             door (route + codec) from the method and path; the head from one header pass
    admit    once: ready? the version? queue room and the wait against the deadline? -> Ticket
    read     the body (413 past the limit)
    decode   the codec: validated float32 (rows, features) against the model's contract
    submit   the batcher: queued, batched, computed; Outputs with each row's label, once
    result   prediction ids (the feedback join key) from those labels
    encode   the codec: the answer in the door's wire format (or its error shape)
    observe  the hooks (serving/pipeline/hooks.py): metrics and the sampled request's span

The HTTP protocol runs ``arrive`` for EVERY request as soon as its headers are complete and
writes a refusal itself (no app code, no body read); an admitted prediction carries its
:class:`Ticket` in the ASGI scope to :meth:`Pipeline.serve`, any other allowed request its
access ``Decision`` to the Litestar routes. The gRPC door calls the same stages with its own
codec.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from litestar.types import Receive, Send

import serving.pipeline.admission as admission
from serving.access.guard import Decision, Guard, Reason
from serving.access.scopes import Scope, route_scope
from serving.batching import Batcher, Outputs, RejectReason
from serving.lifecycle import Service
from serving.model import LoadedModel
from serving.pipeline.body import read_body
from serving.pipeline.codec import Answer
from serving.pipeline.contract import Contract
from serving.pipeline.doors import Door, find_door
from serving.pipeline.errors import MalformedBodyError, NotFoundError, Status, status_of
from serving.pipeline.head import RequestHead, request_id
from serving.pipeline.hooks import NullRequestObserver, RequestObserver, RequestSpan
from serving.pipeline.oip import error as oip_error
from serving.pipeline.oip import is_oip_path
from serving.pipeline.pixels import Array
from serving.pipeline.v1 import error as v1_error

logger = logging.getLogger(__name__)

#: ``scope["extensions"][ARRIVAL]``: what ``Pipeline.arrive`` decided when the protocol read the
#: request's headers (a Ticket, a Refusal, or the access Decision of a Litestar route).
ARRIVAL = "serving.arrival"
#: ``scope["extensions"][RESPONDER]``: the transport's ``send`` for an admitted request, with
#: ``write_response(status, headers, body) -> bool``: the whole answer in one write.
RESPONDER = "serving.responder"

#: The rejection metric's reason for each access refusal.
_REJECTED: dict[Reason, RejectReason] = {
    Reason.MISSING_KEY: "missing_key",
    Reason.INVALID_KEY: "invalid_key",
    Reason.FORBIDDEN: "forbidden",
    Reason.ADMIN_OFF: "admin_off",
    Reason.RATE_LIMITED: "rate_limited",
}

#: ``(labels, confidences, model version[, second opinion]) -> one prediction id per row``
#: (``serving.feedback.loop.Feedback.issue_ids``; the fourth argument only during a rollout).
IssueIds = Callable[..., list[str]]


@dataclass(slots=True)
class Ticket:
    """A prediction request admitted once: everything the later stages need."""

    door: Door
    head: RequestHead
    request_id: str
    #: ``time.monotonic()`` when its bytes arrived (serving/transport/arrival.py).
    arrived_at: float
    #: ``time.monotonic()`` by which it must be answered (arrival + its timeout).
    deadline: float
    batcher: Batcher
    contract: Contract
    #: The name of its API key (bounded: a name from the keys file, "anonymous", "invalid").
    key_name: str = "anonymous"


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request answered from its headers alone (not ready, overloaded, a bad header...)."""

    answer: Answer
    template: str
    request_id: str
    #: Close the connection after it (the service is draining: clients must go elsewhere).
    close: bool = False


class Pipeline:
    """One per app: the stages above over the app's ``Service`` and feedback ids."""

    def __init__(
        self,
        service: Service,
        issue_ids: IssueIds,
        observer: RequestObserver | None = None,
        lag: admission.Lag | None = None,
        guard: Guard | None = None,
    ) -> None:
        """``lag``: the event loop's standing lag (the app's ``LoopLag``), a wait the queue does
        not see, added to every estimate. ``guard``: access control (default: no keys file:
        the admin API off, the rest open)."""
        self.service = service
        self.guard = guard or Guard(None)
        self.lag: admission.Lag = lag or admission.NoLag()
        self.observer: RequestObserver = observer or NullRequestObserver()
        self._issue_ids = issue_ids
        settings = service.settings
        self._model_name = settings.model_name
        self._default_timeout_s = settings.request_timeout_ms / 1000.0
        self._max_timeout_s = settings.max_request_timeout_ms / 1000.0
        self._max_body = settings.max_body_bytes
        self._max_instances = settings.max_instances
        self._contracts: dict[tuple[str, str], Contract] = {}

    # ------------------------------------------------------------------ arrive + admit
    def arrive(
        self, method: str, path: str, head: RequestHead, arrived_at: float
    ) -> Ticket | Refusal | Decision:
        """Any request, from its head (``path``: percent-decoded, as routed): the refusal to
        send (access, or admission of a prediction), a prediction's ticket, or the access
        decision of a request for the Litestar routes."""
        route = route_scope(method, path)
        decision = self.guard.check(route, head.authorization)
        door = find_door(method, path)
        if not decision.allowed:
            self.service.observer.on_rejected(_REJECTED[decision.reason], 0)
            return self._refuse(door, path, head, arrived_at, decision, f"<{route}>")
        if door is None:
            return decision
        try:
            return self.admit(door, head, arrived_at, decision.key_name)
        except Exception as exc:
            return self._refuse(door, path, head, arrived_at, exc, door.template)

    def _refuse(
        self,
        door: Door | None,
        path: str,
        head: RequestHead,
        arrived_at: float,
        why: Exception | Decision,
        template: str,
    ) -> Refusal:
        rid = request_id(head.request_id)
        key = "anonymous"
        if isinstance(why, Decision):
            status = Status(why.status, why.message)
            answer = (
                door.codec.error(status, rid)
                if door is not None and door.codec is not None
                else _error_answer(path, status, rid)
            )
            answer.headers.extend(why.headers)
            key = why.key_name
        elif door is not None:
            answer = self.error(door, why, rid)
        else:  # pragma: no cover  (admission errors only come with a door)
            raise why
        protocol = "http"
        if door is not None:
            template, protocol = door.template, door.protocol
        seconds = time.monotonic() - arrived_at
        self.observer.on_refused(template, answer.status, seconds, key, rid, protocol)
        return Refusal(answer, template, rid, self.service.closing)

    def admit(
        self,
        door: Door,
        head: RequestHead,
        arrived_at: float,
        key_name: str = "anonymous",
        *,
        timeout_s: float | None = None,
        rows: int | None = None,
    ) -> Ticket:
        """Admit once (raises what the client is told instead: 404, 400, 503).

        An HTTP door's codec reads the timeout (``X-Request-Timeout-Ms``) and estimates the
        rows from the headers; a door that knows them (gRPC: the call's deadline, the parsed
        message's shape) passes ``timeout_s`` and ``rows``."""
        if door.model_name is not None and door.model_name != self._model_name:
            raise NotFoundError(
                f"unknown model {door.model_name!r}: this server serves {self._model_name!r}"
            )
        if timeout_s is None:
            timeout_s = self._default_timeout_s
            if door.codec is not None and door.codec.timeout_header:
                try:
                    timeout_s = admission.header_timeout_s(
                        head.timeout, self._default_timeout_s, self._max_timeout_s
                    )
                except ValueError as exc:
                    raise MalformedBodyError(str(exc)) from None
        timeout_s = min(timeout_s, self._max_timeout_s)
        deadline = arrived_at + timeout_s
        batcher, model = self.service.admit(door.version, head.client_id)
        contract = self.contract(model)
        if rows is None:
            rows = door.codec.expected_rows(head, contract.features) if door.codec else 1
        admission.admit(self.service, batcher, rows, deadline, budget_s=timeout_s, lag=self.lag)
        return Ticket(
            door,
            head,
            request_id(head.request_id),
            arrived_at,
            deadline,
            batcher,
            contract,
            key_name,
        )

    def full(self, pending: int = 0) -> bool:
        """Whether the service already holds all the work it can finish in time: the newest
        batcher's queue cannot take one more row, or the rows ahead (computing, queued, and
        ``pending`` requests about to be read) would take the default deadline (with
        admission's headroom) to compute. The transport stops reading while it is
        (serving/transport/backpressure.py). False while not serving: a draining service must
        read every request to answer it."""
        service = self.service
        batcher = service.batcher
        if batcher is None or not service.ready:
            return False
        settings = service.settings
        queued = batcher.queued_rows + pending
        if queued + 1 > settings.max_queue_size:
            return True
        ahead = queued + batcher.rows_in_flight
        meter = batcher.throughput
        # As admission judges a request: with nothing ahead it is computed at once, as fast as
        # the service goes. The average still holds a past overload's slow batches and falls
        # only as batches run; judged by it, an idle service held every connection for the
        # sweep's max_wait_s (750 ms per request after an overload, for seconds).
        compute = (
            meter.wait_s(ahead + 1, settings.max_batch_size) if ahead else meter.fastest_idle_s
        )
        return compute + self.lag.standing_s > self._default_timeout_s * admission.HEADROOM

    def contract(self, model: LoadedModel) -> Contract:
        key = (model.version, model.sha256)
        contract = self._contracts.get(key)
        if contract is None:
            contract = self._contracts[key] = Contract.of(model, self._max_instances)
        return contract

    # ------------------------------------------------------------------ the doors' shared stages
    def check(self, route: Scope, authorization: bytes | str | None) -> Decision:
        """The access stage alone, for a door that knows its route's scope (gRPC)."""
        decision = self.guard.check(route, authorization)
        if not decision.allowed:
            self.service.observer.on_rejected(_REJECTED[decision.reason], 0)
        return decision

    async def compute(
        self, ticket: Ticket, pixels: Array, timeout_s: float | None = None
    ) -> tuple[Outputs, list[str]]:
        """submit -> result: the batch's outputs for ``pixels`` and one prediction id per row.
        ``timeout_s``: a deadline the request's body set (OIP ``parameters.timeout``), counted
        from arrival like the ticket's."""
        deadline = ticket.deadline
        if timeout_s is not None:
            deadline = ticket.arrived_at + min(timeout_s, self._max_timeout_s)
        outputs = await ticket.batcher.submit(pixels, deadline)
        labels, confidences = outputs.labels.tolist(), outputs.confidences.tolist()
        if outputs.second is None:
            ids = self._issue_ids(labels, confidences, ticket.contract.model_version)
        else:  # a rollout's other version computed these rows too: ids that score both
            ids = self._issue_ids(
                labels, confidences, ticket.contract.model_version, outputs.second
            )
        return outputs, ids

    def observe(self, ticket: Ticket) -> Observation:
        """``with pipeline.observe(ticket) as seen: ...; seen.status = code``: the request in
        flight, in its span if sampled, and its outcome, for any door."""
        return Observation(self.observer, ticket)

    # ------------------------------------------------------------------ serve (HTTP)
    async def serve(self, ticket: Ticket, receive: Receive, send: Send) -> None:
        """Read, decode, submit, encode, send and observe one admitted HTTP request."""
        with self.observe(ticket) as seen:
            seen.status = await self._serve(ticket, receive, send)

    async def _serve(self, ticket: Ticket, receive: Receive, send: Send) -> int:
        codec = ticket.door.codec
        assert codec is not None  # an HTTP door
        contract = ticket.contract
        try:
            body = await read_body(receive, self._max_body, ticket.head.content_length)
            decoded = codec.decode(ticket.head, body, contract, self._max_body)
            outputs, ids = await self.compute(ticket, decoded.pixels, decoded.timeout_s)
            answer = codec.encode(outputs, decoded, contract, ids)
        except Exception as exc:
            answer = self.error(ticket.door, exc, ticket.request_id)
        await send_answer(send, answer, ticket.request_id, self.service.closing)
        return answer.status

    def error(self, door: Door, exc: BaseException, rid: str) -> Answer:
        """``exc`` in the door's error shape, with Retry-After on a 503."""
        status = self.status(exc, rid)
        assert door.codec is not None  # an HTTP door
        answer = door.codec.error(status, rid)
        if status.retry_after_s is not None:
            answer.headers.append((b"retry-after", b"%d" % status.retry_after_s))
        return answer

    def status(self, exc: BaseException, rid: str) -> Status:
        """What ``exc`` tells the client (any door); a 500 is logged, every error observed."""
        status = status_of(exc)
        if status.code == 500:
            logger.error("request %s: %s", rid, exc, exc_info=exc)
        self.observer.on_error(exc)
        return status


class Observation:
    """One request in flight for the observer; the door sets ``status`` before it ends."""

    __slots__ = ("_observer", "_span", "_started", "status", "ticket")

    def __init__(self, observer: RequestObserver, ticket: Ticket) -> None:
        self._observer = observer
        self.ticket = ticket
        self.status = 500  # what the client gets if the door raises before setting it
        self._span: RequestSpan | None = None
        self._started = 0.0

    def __enter__(self) -> Observation:
        self._observer.on_start()
        self._started = time.perf_counter()
        ticket = self.ticket
        self._span = self._observer.span(ticket.door, ticket.head, ticket.key_name)
        if self._span is not None:
            self._span.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        ticket = self.ticket
        if self._span is not None:
            self._span.finish(self.status)
            self._span.__exit__(*exc)
        self._observer.on_end(
            ticket.door.template,
            self.status,
            time.perf_counter() - self._started,
            ticket.key_name,
            ticket.request_id,
            ticket.door.protocol,
        )


async def send_answer(send: Send, answer: Answer, rid: str, closing: bool) -> None:
    """Two ASGI messages: the status line with every header, then the whole body; or one
    write, when ``send`` is the transport's (``write_response``: serving/transport/protocol.py)."""
    headers = [
        (b"content-type", answer.content_type),
        (b"content-length", b"%d" % len(answer.body)),
        (b"x-request-id", rid.encode("latin-1")),
        *answer.headers,
    ]
    if closing:  # while draining, keep-alive clients must not reuse the connection
        headers.append((b"connection", b"close"))
    write = getattr(send, "write_response", None)
    if write is not None and write(answer.status, headers, answer.body):
        return
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body, "more_body": False})


def _error_answer(path: str, status: Status, rid: str) -> Answer:
    """An error of a Litestar route, in its shape (OIP under /v2, else v1), from the pipeline."""
    if is_oip_path(path):
        code, body = oip_error(status)
        return Answer(code, body)
    return Answer(status.code, v1_error(status, rid))


def arrival_of(scope: Mapping[str, Any]) -> Ticket | Refusal | Decision | None:
    """What the protocol's ``arrive`` decided for this request (None: no protocol saw it)."""
    extensions = scope.get("extensions")
    return extensions.get(ARRIVAL) if extensions else None
