"""Connection limits uvicorn's httptools protocol does not enforce, enforced in a subclass of it.

uvicorn owns the idle keep-alive timeout (``timeout_keep_alive``). With httptools it has no
limit on header size (``h11_max_incomplete_event_size`` is h11 only), no timeout for a client
that trickles its headers or body, none for a new connection that sends nothing, and its
``limit_concurrency`` answers in plain text after reading the request. This protocol adds:

* header bytes beyond ``max_header_bytes`` -> 431 and close (counted as they arrive, so a huge
  header is refused before it is buffered whole);
* headers not complete ``header_timeout_s`` after the connection opened or the request began ->
  408 and close;
* a body not complete ``body_timeout_s`` after its headers -> 408 and close (the app sees the
  client as gone; a response already started is cut);
* more than ``max_connections`` open connections -> the new one gets 503 + ``Connection:
  close`` at once, before anything is read;
* a declared ``Content-Length`` beyond ``max_body_bytes`` -> 413 and close, before anything
  else is decided: a body that can never fit is never told to retry (no 503);
* one pass over the headers (``RequestHead``) and the pipeline's ``arrive`` for every request
  before any ASGI task exists: access control (401/403/429) and, for a prediction, admission.
  The outcome travels in the scope (a prediction's ``Ticket``, another route's access
  decision); a refused request (no key, over its rate, overloaded, not ready, a bad header, an
  unknown model) is answered in its API's error shape as soon as its body has been read and
  dropped, and no app code runs (the cheapest refusal); a chunked body passing
  ``max_body_bytes`` gets its 413 instead. A
  pipelined request (behind one still being answered) is decided by the app when its turn
  comes, with the same ``arrive``;
* backpressure (backpressure.py): while the service holds all the work it can finish in time,
  a connection is not read at its next request boundary (after a response, or when new): the
  request waits in the kernel, and is read first-come-first-served as answers go out.

Responses here are written directly, with the service's JSON error body: no app code runs.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from serving.access.guard import Decision
from serving.access.scopes import path_of_target
from serving.pipeline import ARRIVAL, RESPONDER, Refusal, Ticket
from serving.pipeline.errors import Status
from serving.pipeline.head import RequestHead, read_head
from serving.pipeline.v1 import error as v1_error
from serving.transport.arrival import stamp, waited_s
from serving.transport.backpressure import Backpressure

#: How long a refused connection is still read (and its input dropped) after the response.
LINGER_S = 2.0
#: Share of ``max_connections`` from which a new connection is held (backpressure) rather than
#: read while the service is full: beyond the limit it would be refused.
NEAR_LIMIT = 0.9
_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
_REASONS[413] = b"Content Too Large"  # RFC 9110's name

#: ``(method, path, head, arrived_at)`` -> a Refusal (answer it now), or what the app needs to
#: serve the request (a prediction's Ticket, another route's access Decision). ``path``:
#: percent-decoded, as routed; ``arrived_at``: ``time.monotonic()`` when the request's bytes
#: reached the kernel (serving/transport/arrival.py). ``Pipeline.arrive``.
Arrive = Callable[[str, str, RequestHead, float], Ticket | Refusal | Decision]


def http_response(
    status: int, reason: bytes, headers: list[tuple[bytes, bytes]], body: bytes
) -> bytes:
    """Serialise a complete HTTP/1.1 response (headers already lower-case)."""
    lines = [b"HTTP/1.1 %d %s" % (status, reason), b"content-length: %d" % len(body)]
    lines += [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def own_socket(transport_socket: Any) -> socket.socket | None:
    """A socket object over a duplicate of the transport's descriptor (None: no socket)."""
    if transport_socket is None:
        return None
    try:
        return socket.socket(fileno=os.dup(transport_socket.fileno()))
    except OSError:
        return None


class DirectSend:
    """The ASGI ``send`` of one request (uvicorn's), plus :meth:`write_response`: a complete
    answer written in ONE transport write, with the bookkeeping uvicorn's ``send`` does.

    uvicorn's ``send`` takes two coroutine calls, checks every header with two regular
    expressions and writes the head and the body separately (two syscalls): a measured ~25 us
    of a ~180 us request. The pipeline's answers are complete and their headers its own (the
    request id is sanitised: printable, no CR/LF), so it writes them directly.
    """

    __slots__ = ("_cycle",)

    def __init__(self, cycle: Any) -> None:
        self._cycle = cycle

    def __call__(self, message: Any) -> Awaitable[None]:
        result: Awaitable[None] = self._cycle.send(message)
        return result

    def write_response(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bool:
        """Write the whole answer now; False: not written (the caller uses ``send``)."""
        cycle = self._cycle
        if cycle.flow.write_paused or cycle.response_started:
            return False  # a slow reader (uvicorn's send waits for the drain) or a bug: its way
        if cycle.disconnected:
            return True  # the client is gone (uvicorn's send drops it too)
        parts = [STATUS_LINE[status]]
        for name, value in cycle.default_headers:  # date and server, as uvicorn sends them
            parts += (name, b": ", value, b"\r\n")
        keep_alive = cycle.keep_alive
        said_close = False
        for name, value in headers:
            if name == b"connection" and value == b"close":
                keep_alive = False
                said_close = True
            parts += (name, b": ", value, b"\r\n")
        if not keep_alive and not said_close:  # the client asked to close: say so
            parts.append(b"connection: close\r\n")
        parts += (b"\r\n", body)
        cycle.keep_alive = keep_alive
        cycle.response_started = cycle.response_complete = True
        cycle.transport.write(b"".join(parts))
        cycle.message_event.set()
        if not keep_alive:
            cycle.transport.close()
        cycle.on_response()
        return True


def refusal_bytes(refusal: Refusal) -> bytes:
    """A pipeline refusal as a complete keep-alive response."""
    answer = refusal.answer
    headers = [
        (b"content-type", answer.content_type),
        (b"x-request-id", refusal.request_id.encode("latin-1")),
        *answer.headers,
    ]
    return http_response(answer.status, _REASONS.get(answer.status, b""), headers, answer.body)


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_header_bytes: int
    header_timeout_s: float
    body_timeout_s: float
    max_connections: int
    max_body_bytes: int


def canned_response(status: int, message: str) -> bytes:
    """A complete HTTP/1.1 response with the JSON error body that closes the connection."""
    body = v1_error(Status(status, message), "")
    head = (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"connection: close\r\n" % (status, _REASONS[status], len(body))
    )
    if status == 503:
        head += b"retry-after: 1\r\n"
    return head + b"\r\n" + body


def guarded_protocol(
    limits: ConnectionLimits,
    arrive: Arrive | None = None,
    backpressure: Backpressure | None = None,
) -> type[HttpToolsProtocol]:
    """The protocol class for uvicorn's ``http`` option, bound to ``limits``, the pipeline's
    ``arrive`` and the worker's ``backpressure`` (None: limits only, e.g. before the app is
    built)."""
    too_large = canned_response(431, f"request headers larger than {limits.max_header_bytes} bytes")
    header_timeout = canned_response(
        408, f"request headers not received within {limits.header_timeout_s:g} s"
    )
    body_timeout = canned_response(
        408, f"request body not received within {limits.body_timeout_s:g} s"
    )
    too_many = canned_response(503, "too many open connections; retry later")
    too_big = canned_response(413, f"request body larger than {limits.max_body_bytes} bytes")

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _awaiting_headers = True
        _header_bytes = 0
        _refused = False
        _shedding = False
        _close_after_shed = False
        #: A shed answer held back until a chunked body is complete (or passes the limit).
        _deferred: bytes | None = None
        _dropped = 0
        #: Between on_message_begin and on_message_complete; messages completed so far (to tell
        #: whether a chunk held the end of one): data_received counts a head's first chunk.
        _in_message = False
        _completed = 0
        _timer: asyncio.TimerHandle | None = None
        _socket: Any = None
        #: Backpressure: held (not read) / resumed, its next request not yet at admission.
        _held = False
        _resumed = False
        held_at = 0.0
        #: Its last request was a prediction: the next one most likely is too (a probe or a
        #: scrape comes on its own connection), so it may be held at its next boundary.
        _predicting = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            # A socket object of our own (a dup of the fd) for TCP_INFO: uvloop's transport
            # socket builds a new socket object on every getsockopt (a measured ~9 us per
            # request); this one is built once per connection and closed with it.
            self._socket = own_socket(transport.get_extra_info("socket"))
            if len(self.connections) > limits.max_connections:
                self._refuse(too_many)
                return
            if (
                backpressure is not None
                and len(self.connections) > limits.max_connections * NEAR_LIMIT
                and backpressure.at_boundary(self)
            ):
                return  # held instead of refused at the limit; the header timer starts later
            self._arm(limits.header_timeout_s, header_timeout)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self._socket is not None:
                self._socket.close()
                self._socket = None
            if backpressure is not None and (self._held or self._resumed):
                backpressure.forget(self, resumed=self._resumed)
                self._held = self._resumed = False
            super().connection_lost(exc)

        # -------------------------------------------------------------- backpressure
        @property
        def closed(self) -> bool:
            return self.transport.is_closing()

        def hold(self) -> None:
            self._held = True
            self.held_at = time.monotonic()
            self._unset_keepalive_if_required()  # the client is not idle: it is waiting
            self.flow.pause_reading()

        def resume(self) -> None:
            self._held, self._resumed = False, True
            self.flow.resume_reading()
            cycle: Any = self.cycle  # None until a first request (uvicorn types it otherwise)
            if cycle is None:  # a new connection: from now on it must send its headers
                self._arm(limits.header_timeout_s, header_timeout)
            else:  # idle between requests, as uvicorn would leave it
                self.timeout_keep_alive_task = self.loop.call_later(
                    self.timeout_keep_alive, self.timeout_keep_alive_handler
                )

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if backpressure is None or self.transport.is_closing():
                return
            if self._predicting and not self.pipeline and not self._held:
                backpressure.at_boundary(self)
            backpressure.release()  # answers went out: room for those waiting longest

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            if self._awaiting_headers:
                self._header_bytes += len(data)
            at_boundary, completed = not self._in_message, self._completed
            super().data_received(data)
            if at_boundary and self._completed == completed and self._awaiting_headers:
                # The message began in this chunk (on_message_begin zeroed the count) and the
                # chunk held nothing of another one: all of it is this message's head so far.
                # Uncounted, a head over the limit arriving in one read waited for the 408.
                self._header_bytes = len(data)
            if self._awaiting_headers and self._header_bytes > limits.max_header_bytes:
                self._refuse(too_large)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_message = True
            self._awaiting_headers = True
            self._header_bytes = 0
            self._arm(limits.header_timeout_s, header_timeout)

        def on_headers_complete(self) -> None:
            if self._refused:
                return
            self._awaiting_headers = False
            if self._resumed:
                self._resumed = False
                assert backpressure is not None
                backpressure.arrived(self)
            size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
            if size > limits.max_header_bytes:
                self._refuse(too_large)
                return
            idle = self.cycle is None or self.cycle.response_complete
            head = read_head(self.headers)
            declared = head.content_length
            if idle and declared is not None and declared > limits.max_body_bytes:
                self._refuse(too_big)  # can never succeed: no admission estimate, no retry
                return
            self._arm(limits.body_timeout_s, body_timeout)
            arrival = time.monotonic() - waited_s(self._socket)
            stamp(self.scope, arrival)
            # A pipelined request (one behind a response still being written) is decided when
            # its turn comes, by the app (the same ``arrive``): admitted now, its wait would be
            # judged before the one ahead of it has finished.
            outcome: Ticket | Refusal | Decision | None = None
            if arrive is not None and idle:
                method = self.parser.get_method().decode("latin-1")
                outcome = arrive(method, path_of_target(self.url), head, arrival)
                self._predicting = isinstance(outcome, Ticket) or (
                    isinstance(outcome, Refusal) and not outcome.template.startswith("<")
                )
                if isinstance(outcome, Refusal):
                    self._answer_now(outcome)
                    return
                extensions: dict[str, Any] = self.scope["extensions"]
                extensions[ARRIVAL] = outcome
            super().on_headers_complete()
            if isinstance(outcome, Ticket):
                extensions[RESPONDER] = DirectSend(self.cycle)

        def _answer_now(self, refusal: Refusal) -> None:
            """Answer from the headers: no app code runs. The body is read and dropped first
            (a chunked one passing ``max_body_bytes`` gets its 413 instead; one that stalls,
            the body timeout's 408), then the answer goes out and the connection serves its
            next request, unless the client asked to close it. Answering before the body was
            sent would make HTTP/1.1 clients (h11, httpx) drop the connection and retry on a
            new one: slower for both sides, and out of backpressure's reach."""
            answer = refusal_bytes(refusal)
            self._shedding = True
            self._close_after_shed = refusal.close or not self.parser.should_keep_alive()
            if self._close_after_shed:
                answer = answer.replace(b"\r\n", b"\r\nconnection: close\r\n", 1)
            self._deferred, self._dropped = answer, 0
            self._arm(limits.body_timeout_s, body_timeout)

        def on_body(self, body: bytes) -> None:
            if self._refused:
                return
            if not self._shedding:
                super().on_body(body)
            elif self._deferred is not None:
                self._dropped += len(body)
                if self._dropped > limits.max_body_bytes:
                    self._deferred = None
                    self._refuse(too_big)

        def on_message_complete(self) -> None:
            self._in_message = False
            self._completed += 1
            if self._refused:
                return
            self._disarm()
            if self._shedding:
                self._shedding = False
                if self._deferred is not None:
                    self.transport.write(self._deferred)
                    self._deferred = None
                if self._close_after_shed:
                    self.transport.close()  # the whole request was read: no reset
                    return
                self.on_response_complete()  # keep-alive timer, next pipelined request
                return
            super().on_message_complete()

        def _arm(self, seconds: float, response: bytes) -> None:
            self._disarm()
            self._timer = self.loop.call_later(seconds, self._refuse, response)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _refuse(self, response: bytes) -> None:
            """Answer ``response`` (if any, and unless one already started), then close."""
            self._refused = True
            self._disarm()
            cycle: Any = self.cycle
            transport = self.transport
            if cycle is not None and not cycle.response_complete:
                cycle.disconnected = True  # the app's receive() now reports the client gone
                cycle.message_event.set()
            if transport.is_closing():
                return
            # A finished cycle is an earlier request's: this request has no answer yet.
            answered = cycle is not None and not cycle.response_complete and cycle.response_started
            if response and not answered and transport.can_write_eof():
                # Lingering close: closing with unread input would reset the connection and
                # could destroy the response before the client reads it. Send it, half-close,
                # keep reading (and dropping) for a moment, then close.
                transport.write(response)
                transport.write_eof()
                self.loop.call_later(LINGER_S, transport.close)
            else:
                transport.close()

    return GuardedHttpToolsProtocol
