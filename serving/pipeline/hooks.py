"""The pipeline's observation hooks: what observability is told about each prediction request.

The pipeline knows nothing about OpenTelemetry or Prometheus; it calls these at the moments that
matter, on the event loop. :class:`NullRequestObserver` is the default (all observability off).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from serving.pipeline.doors import Door
    from serving.pipeline.head import RequestHead


class RequestSpan(Protocol):
    """The server span of a sampled request, current while the pipeline serves it."""

    def __enter__(self) -> object: ...

    def __exit__(self, *exc: object) -> None: ...

    def finish(self, status: int) -> None:
        """Record the status the request was answered with (before ``__exit__``)."""


class RequestObserver(Protocol):
    def span(self, door: Door, head: RequestHead, key: str) -> RequestSpan | None:
        """A span to serve the request in, if it is sampled (None: not traced); ``key``: the
        name of its API key, an attribute of the span."""

    def on_start(self) -> None:
        """A prediction request starts being served (in flight)."""

    def on_end(
        self, template: str, status: int, seconds: float, key: str, rid: str, protocol: str
    ) -> None:
        """It was answered with ``status`` after ``seconds`` (from when it was admitted);
        ``key``: the name of its API key (bounded), ``rid``: its request id, ``protocol``: its
        door's (``http``, ``grpc``); ``status``: HTTP's code (a gRPC status maps to its twin)."""

    def on_refused(
        self, template: str, status: int, seconds: float, key: str, rid: str, protocol: str
    ) -> None:
        """It was refused from its headers (access, admission), ``seconds`` after arrival;
        ``template``: its route template, or ``<scope>`` for a route the pipeline does not
        serve."""

    def on_error(self, exc: BaseException) -> None:
        """It ended with ``exc`` instead of a prediction (e.g. an invalid input's reason)."""


class NullRequestObserver:
    """Observes nothing."""

    def span(self, door: Door, head: RequestHead, key: str) -> RequestSpan | None:
        return None

    def on_start(self) -> None:
        pass

    def on_end(
        self, template: str, status: int, seconds: float, key: str, rid: str, protocol: str
    ) -> None:
        pass

    def on_refused(
        self, template: str, status: int, seconds: float, key: str, rid: str, protocol: str
    ) -> None:
        pass

    def on_error(self, exc: BaseException) -> None:
        pass
