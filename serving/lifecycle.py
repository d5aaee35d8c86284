"""Readiness and draining: the service's phases and the resources each phase owns.

    STARTING --start()--> READY --begin_drain()--> DRAINING --stop()--> STOPPED

``start`` loads and verifies the model, warms it up over several batch sizes and starts the
batcher; only then is the service READY (``/readyz`` 200). ``begin_drain`` (first SIGTERM) makes
``/readyz`` and new predictions answer 503 while everything already queued is still computed.
Which model versions are served, and how a new one comes in while READY, is ``versions.py``.
"""

from __future__ import annotations

import asyncio
import enum
import gc
import itertools
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from serving.batching import Batcher, BatchObserver, DrainingError, NullObserver
from serving.model import LoadedModel, load_model
from serving.settings import Settings
from serving.versions import (
    ModelEvents,
    ModelLoader,
    RefreshResult,
    Selection,
    Served,
    VersionSet,
)

logger = logging.getLogger(__name__)

__all__ = ["ModelLoader", "NotReadyError", "Phase", "Service", "UnknownVersionError"]


class Rollout(Selection, Protocol):
    """A rollout as the service runs it: a :class:`Selection` with its judging task."""

    async def run(self, refresh: Callable[[], Awaitable[object]]) -> None:
        """Flush evidence and judge, forever; ``refresh`` applies a changed state."""

    def close(self) -> None:
        """Flush what is left and close (blocking; at stop)."""


class NotReadyError(Exception):
    """The model is not loaded and warmed up yet (503)."""


class UnknownVersionError(LookupError):
    """The requested model version is not served (404)."""


class Phase(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    STOPPED = "stopped"


def warm_up_sizes(max_batch_size: int) -> list[int]:
    """1, 8, 32 and the largest batch: the shapes onnxruntime will see first under load."""
    return sorted({size for size in (1, 8, 32, max_batch_size) if size <= max_batch_size})


def settle_heap(young_threshold: int) -> int:
    """Tune CPython's cyclic collector for serving, once start-up is over; returns how many
    objects were frozen.

    Freezing keeps full collections from walking the start-up heap (modules, the app,
    onnxruntime's and OpenTelemetry's objects) under load; frozen objects are still freed by
    reference counting. A higher young threshold (0 keeps Python's 700) stops the objects of
    requests in flight from triggering a young collection every few dozen requests; the
    request path makes almost no reference cycles, so garbage does not pile up.
    Measurements: docs/decisions.md, "Garbage collector".
    """
    gc.collect()  # what start-up left as garbage is freed, not frozen
    gc.freeze()
    if young_threshold:
        _, middle, old = gc.get_threshold()
        gc.set_threshold(young_threshold, middle, old)
    return gc.get_freeze_count()


def shorten_gil_switch_interval(milliseconds: float) -> float:
    """Set how long a thread may keep the GIL while another thread waits for it (0 keeps
    Python's 5 ms); returns the interval in seconds.

    onnxruntime computes a batch without the GIL but needs it back to hand the result to the
    event loop, which under load always holds it: the handoff waits up to one interval per
    batch. Measurements: docs/decisions.md, "GIL switch interval".
    """
    if milliseconds:
        sys.setswitchinterval(milliseconds / 1000)
    return sys.getswitchinterval()


class Service:
    """Everything one server process serves with; lives in ``app.state.service``."""

    def __init__(
        self,
        settings: Settings,
        model_loader: ModelLoader = load_model,
        *,
        observer: BatchObserver | None = None,
        events: ModelEvents | None = None,
        rollout: Rollout | None = None,
    ) -> None:
        """``observer`` hears batching and admission, ``events`` the versions served, retired
        and refused (observability's, built before the service: serving/app.py). ``rollout``
        decides the served versions beside the version policy (serving/rollout_service.py)."""
        self.settings = settings
        self.rollout = rollout
        self.observer: BatchObserver = observer or NullObserver()
        self.phase = Phase.STARTING
        self.versions_set = VersionSet(
            settings,
            model_loader,
            self._start_batcher,
            retire_after_s=settings.max_request_timeout_ms / 1000.0,
        )
        if events is not None:
            self.versions_set.events = events
        self.versions_set.selection = rollout
        self._poller: asyncio.Task[None] | None = None
        self._judge: asyncio.Task[None] | None = None
        self._batch_ids = itertools.count(1)  # one sequence for every version's batcher

    @property
    def model(self) -> LoadedModel | None:
        """The newest served model (``/v1/predict`` computes with it)."""
        newest = self.versions_set.newest
        return newest.model if newest is not None else None

    @property
    def batcher(self) -> Batcher | None:
        newest = self.versions_set.newest
        return newest.batcher if newest is not None else None

    @property
    def ready(self) -> bool:
        return self.phase is Phase.READY and self.versions_set.newest is not None

    def admit(
        self, version: str | None = None, client: bytes | None = None
    ) -> tuple[Batcher, LoadedModel]:
        """The batcher and model a new request is served with (``version``: a served one, by
        default the newest, or during a canary the version the client's id is routed to).

        Raises :class:`NotReadyError` (starting), ``DrainingError`` (shutting down), after
        reporting the rejection, so handlers never talk to the observer themselves; or
        :class:`UnknownVersionError`.
        """
        versions = self.versions_set
        newest = versions.newest
        if self.phase is not Phase.READY:
            if self.phase is Phase.DRAINING:
                self.observer.on_rejected("draining", 0)
                raise DrainingError("the service is shutting down")
            self.observer.on_rejected("not_ready", 0)
            raise NotReadyError("the model is not loaded yet")
        if newest is None:
            name = self.settings.model_name
            raise UnknownVersionError(
                f"model {name!r} is unloaded: POST /v2/repository/models/{name}/load"
            )
        served: Served | None
        if version is None:
            route = versions.route
            served = newest if route is None else route.pick(client)
        else:
            served = versions.served.get(version)
        if served is None:
            raise UnknownVersionError(
                f"model {newest.model.name!r} has no served version {version!r}; served: "
                f"{', '.join(versions.served)}"
            )
        return served.batcher, served.model

    def versions(self) -> list[str]:
        """The served versions, newest first (empty before start)."""
        return list(self.versions_set.served)

    async def load(self) -> RefreshResult:
        """Serve what the repository holds now, retrying refused versions (OIP ``load``)."""
        return await self.versions_set.load()

    async def unload(self) -> None:
        """Stop serving the model until :meth:`load` (OIP ``unload``); readiness turns 503."""
        await self.versions_set.unload()

    def served_models(self) -> list[LoadedModel]:
        """The served models, newest first."""
        return self.versions_set.models()

    async def _start_batcher(self, model: LoadedModel) -> Batcher:
        """A started batcher for ``model``, warmed up: its first requests pay no set-up cost."""
        settings = self.settings
        batcher = Batcher(
            model.predict,
            max_batch_size=settings.max_batch_size,
            max_batch_delay_ms=settings.max_batch_delay_ms,
            max_queue_size=settings.max_queue_size,
            max_concurrent_batches=settings.max_concurrent_batches,
            inline_max_rows=settings.inline_max_rows,
            observer=self.observer,
            batch_ids=self._batch_ids,
            model_version=model.version,
        )
        await batcher.start()
        try:
            await batcher.warm_up(warm_up_sizes(settings.max_batch_size), model.num_features)
        except BaseException:
            await batcher.stop()
            raise
        return batcher

    async def start(self) -> None:
        """Load (raises ``ModelLoadError`` with a clear message), warm up, start batching, then
        poll the repository every ``model_poll_interval_s``."""
        await self.versions_set.refresh(strict=True)
        self.phase = Phase.READY
        loop = asyncio.get_running_loop()
        if self.settings.model_poll_interval_s > 0:
            self._poller = loop.create_task(self._poll(), name="model-poll")
        if self.rollout is not None:
            self._judge = loop.create_task(
                self.rollout.run(self.versions_set.refresh), name="rollout-judge"
            )

    async def _poll(self) -> None:
        interval = self.settings.model_poll_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                await self.versions_set.refresh()
            except Exception:  # never let the poller die: the served versions keep serving
                logger.exception("model poll failed; the served versions keep serving")

    def queued_rows(self) -> int:
        """Rows waiting in the batchers (0 before start): what the queue-depth gauge reads."""
        return sum(batcher.queued_rows for batcher in self.versions_set.batchers())

    def _stop_polling(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None
        if self._judge is not None:
            self._judge.cancel()
            self._judge = None

    def begin_drain(self) -> None:
        """Refuse new work (503) from now on; queued and in-flight requests are still answered."""
        if self.phase in (Phase.STARTING, Phase.READY):
            self.phase = Phase.DRAINING
            logger.info("draining: readiness is now 503, new requests are refused")
        self._stop_polling()
        for batcher in self.versions_set.batchers():
            batcher.begin_drain()

    @property
    def closing(self) -> bool:
        """True once draining: responses then carry ``Connection: close``."""
        return self.phase in (Phase.DRAINING, Phase.STOPPED)

    async def drain(self, timeout_s: float, grace_s: float = 0.0) -> bool:
        """``begin_drain``, then wait until the batchers are idle and ``grace_s`` has passed.

        The grace period lets every keep-alive client receive a response with
        ``Connection: close`` before the server closes idle connections, so no client sends a
        request on a connection that is being closed. Bounded by ``timeout_s``; False on timeout.
        """
        self.begin_drain()
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout_s):
                for batcher in self.versions_set.batchers():
                    await batcher.wait_idle()
                remaining = grace_s - (time.monotonic() - started)
                if remaining > 0:
                    await asyncio.sleep(remaining)
        except TimeoutError:
            logger.warning("drain: still busy after %.1f s", timeout_s)
            return False
        return True

    async def stop(self) -> None:
        self.begin_drain()
        await self.versions_set.stop()
        for batcher in self.versions_set.batchers():
            await batcher.stop()
        if self.rollout is not None:
            await asyncio.to_thread(self.rollout.close)  # its last evidence, then the file
        self.phase = Phase.STOPPED
