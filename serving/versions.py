"""Which model versions are served, and how a new version replaces an old one under load.

Policy: the newest ``model_versions`` versions present in the repository (skipping versions
refused before), plus the pinned ``model_version``. Each served version has its own batcher, so
a batch never mixes versions. :meth:`VersionSet.refresh` brings the served set in line with the
repository: a new version is verified (metadata schema, sha256, tensor names: ``load_model``),
loaded and warmed up off the event loop, and only then swapped in with one assignment. A version
that drops out stops receiving new requests at once but keeps its batcher until every request it
may have admitted has finished (its deadline bound, then idle), so none fails. A version that
cannot be loaded is refused once per content (a fingerprint of its files): one log line, one
``on_refused`` event, and the versions already served keep serving.

A rollout (serving/rollout_service.py, a :class:`Selection`) can decide instead: while its
model's policy is shadow or canary, the served versions are its stable and candidate, and
``newest`` (what a request that names no version gets) is stable. In mode ``replace`` it only
adds the versions it rolled back to the refused ones, so the version policy above is unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from model_repository.layout import list_versions
from serving.batching import Batcher
from serving.model import LoadedModel, ModelLoadError
from serving.settings import Settings

logger = logging.getLogger(__name__)

ModelLoader = Callable[[Settings], LoadedModel]
#: Starts a loaded model's batcher (created, started and warmed up by the Service).
BatcherFactory = Callable[[LoadedModel], Awaitable[Batcher]]


class ModelEvents(Protocol):
    """What observability hears about versions (the metrics live elsewhere)."""

    def on_served(self, model: LoadedModel) -> None:
        """``model`` now receives requests."""

    def on_retired(self, model: LoadedModel) -> None:
        """``model`` no longer receives requests."""

    def on_refused(self, version: int, reason: str) -> None:
        """``version`` could not be loaded; ``reason`` says why in one line."""


class NullModelEvents:
    def on_served(self, model: LoadedModel) -> None:
        pass

    def on_retired(self, model: LoadedModel) -> None:
        pass

    def on_refused(self, version: int, reason: str) -> None:
        pass


@dataclass(frozen=True, slots=True)
class Served:
    """One served version: its model and the batcher that computes only its batches."""

    model: LoadedModel
    batcher: Batcher


@dataclass(frozen=True, slots=True)
class Choice:
    """What a rollout wants served. ``versions`` None: the version policy decides, as without
    a rollout; else exactly these (stable first), and ``stable`` answers by default.
    ``refused``: versions the rollout refused, with why (never served; UNAVAILABLE in the
    index)."""

    stable: int | None = None
    versions: tuple[int, ...] | None = None
    refused: Mapping[int, str] = field(default_factory=dict)


class Route(Protocol):
    """Which served version a request that names none goes to (a canary's split)."""

    def pick(self, client: bytes | None) -> Served: ...


class Selection(Protocol):
    """What decides the served versions besides the version policy (a rollout)."""

    def choose(self, present: list[int]) -> Choice:
        """Blocking (it may wait on a file lock): called in a thread at every refresh."""

    def failed(self, version: int, reason: str) -> None:
        """A chosen version could not be loaded (blocking, in a thread)."""

    def applied(self, served: Mapping[str, Served], stable: Served | None) -> Route | None:
        """The served set after a refresh (on the event loop); the route to use, if any."""


@dataclass(slots=True)
class RefreshResult:
    loaded: list[int] = field(default_factory=list)
    retired: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)


def wanted_versions(
    present: list[int], count: int, pinned: int | None, refused: set[int]
) -> list[int]:
    """Newest first: the newest ``count`` present versions not refused, plus ``pinned``."""
    candidates = [version for version in reversed(present) if version not in refused]
    wanted = candidates[:count]
    if pinned is not None and pinned in present and pinned not in wanted:
        wanted.append(pinned)
    return sorted(wanted, reverse=True)


def fingerprint(path: Path) -> tuple[tuple[str, int, int], ...]:
    """Names, sizes and mtimes of a version's files: changes when the version is re-copied."""
    try:
        return tuple(
            sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in path.iterdir())
        )
    except OSError:
        return ()


class VersionSet:
    """The served versions of one model, newest first; swapped as a whole, never mutated."""

    def __init__(
        self,
        settings: Settings,
        loader: ModelLoader,
        start_batcher: BatcherFactory,
        retire_after_s: float,
    ) -> None:
        self.settings = settings
        self._loader = loader
        self._start_batcher = start_batcher
        self._retire_after_s = retire_after_s
        self.events: ModelEvents = NullModelEvents()
        self.served: dict[str, Served] = {}
        #: What a request naming no version gets: the newest served, or a rollout's stable.
        self.newest: Served | None = None
        #: A canary's split (None, the usual case: every such request gets ``newest``).
        self.route: Route | None = None
        self.selection: Selection | None = None
        self._choice = Choice()
        self.unloaded = False
        self._refused: dict[int, tuple[tuple[tuple[str, int, int], ...], str]] = {}
        self._retiring: dict[asyncio.Task[None], Served] = {}
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------------ reading
    def models(self) -> list[LoadedModel]:
        return [served.model for served in self.served.values()]

    def batchers(self) -> list[Batcher]:
        """Every live batcher, the retiring ones included (draining and stopping cover them)."""
        return [s.batcher for s in self.served.values()] + [
            s.batcher for s in self._retiring.values()
        ]

    def refused_reason(self, version: int) -> str | None:
        entry = self._refused.get(version)
        if entry is not None:
            return entry[1]
        return self._choice.refused.get(version)

    def index(self) -> list[tuple[int, str, str]]:
        """``(version, state, reason)`` for every version present, newest first (OIP
        repository index: READY, or UNAVAILABLE with why)."""
        rows = []
        for version in reversed(self.present()):
            if str(version) in self.served:
                rows.append((version, "READY", ""))
                continue
            refused = self.refused_reason(version)
            reason = refused if refused is not None else "not selected by the version policy"
            rows.append((version, "UNAVAILABLE", "unloaded" if self.unloaded else reason))
        return rows

    def present(self) -> list[int]:
        return list_versions(self.settings.model_repository, self.settings.model_name)

    # ------------------------------------------------------------------ changing
    async def refresh(self, *, strict: bool = False) -> RefreshResult:
        """Serve what the policy wants now. ``strict`` (start-up): a failed load raises."""
        async with self._lock:
            result = RefreshResult()
            if self.unloaded:
                return result
            present = self.present()
            refused = self._still_refused(present)
            choice = Choice()
            if self.selection is not None:
                choice = await asyncio.to_thread(self.selection.choose, present)
            self._choice = choice
            pinned = self.settings.model_version
            if choice.versions is None:
                wanted = wanted_versions(
                    present, self.settings.model_versions, pinned, refused | set(choice.refused)
                )
            else:
                wanted = [v for v in choice.versions if v not in refused]
                if pinned is not None and pinned in present and pinned not in wanted:
                    wanted.append(pinned)
            if not wanted and strict:
                raise ModelLoadError(
                    f"no versions of model {self.settings.model_name!r} under "
                    f"{self.settings.model_repository}"
                )
            fresh: dict[str, Served] = {}
            for version in wanted:
                current = self.served.get(str(version))
                if current is not None:
                    fresh[str(version)] = current
                    continue
                served = await self._load(version, strict, result)
                if served is not None:
                    fresh[str(version)] = served
                elif self.selection is not None and choice.versions is not None:
                    await asyncio.to_thread(
                        self.selection.failed, version, result.refused.get(version, "not loaded")
                    )
            stable = fresh.get(str(choice.stable)) if choice.stable is not None else None
            if not fresh or (choice.stable is not None and stable is None):
                # Everything wanted failed, or the rollout's stable did: keep serving what is
                # served (never let a candidate answer by default because stable is missing).
                self._apply()
                return result
            self._swap(dict(sorted(fresh.items(), key=lambda kv: -int(kv[0]))), result, stable)
            return result

    async def unload(self) -> list[int]:
        """Stop serving every version (until :meth:`load`); returns the versions retired."""
        async with self._lock:
            self.unloaded = True
            result = RefreshResult()
            self._swap({}, result, None)
            return result.retired

    async def load(self) -> RefreshResult:
        """Undo :meth:`unload` and refresh now, retrying versions refused before."""
        self.unloaded = False
        self._refused.clear()
        return await self.refresh()

    async def stop(self) -> None:
        """Stop retiring batchers now (shutdown); the served ones are the Service's to stop."""
        retiring = list(self._retiring.items())
        for task, _ in retiring:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for _, served in retiring:
            await served.batcher.stop()

    # ------------------------------------------------------------------ internals
    def _still_refused(self, present: list[int]) -> set[int]:
        """Versions refused before whose files have not changed since."""
        root = self.settings.model_repository / self.settings.model_name
        refused = set()
        for version, (stamp, _) in list(self._refused.items()):
            if version in present and fingerprint(root / str(version)) == stamp:
                refused.add(version)
            else:
                del self._refused[version]
        return refused

    async def _load(self, version: int, strict: bool, result: RefreshResult) -> Served | None:
        settings = self.settings.model_copy(update={"model_version": version})
        try:
            model = await asyncio.to_thread(self._loader, settings)
            batcher = await self._start_batcher(model)
        except ModelLoadError as exc:
            if strict:
                raise
            self._refuse(version, str(exc), result)
            return None
        except Exception as exc:  # a loader bug or onnxruntime oddity: refuse, keep serving
            if strict:
                raise
            self._refuse(version, f"{type(exc).__name__}: {exc}", result)
            return None
        problem = self._contract_problem(model)
        if problem is not None:
            await batcher.stop()
            if strict:
                raise ModelLoadError(problem)
            self._refuse(version, problem, result)
            return None
        result.loaded.append(version)
        return Served(model, batcher)

    def _contract_problem(self, model: LoadedModel) -> str | None:
        """Why ``model`` cannot replace the served one for the same clients (None: it can)."""
        if self.newest is None:
            return None
        current = self.newest.model
        mine = (model.input_name, model.num_features, model.output_name, model.num_classes)
        theirs = (current.input_name, current.num_features, current.output_name,
                  current.num_classes)  # fmt: skip
        if mine == theirs:
            return None
        return (
            f"its IO contract {mine[0]}[{mine[1]}] -> {mine[2]}[{mine[3]}] differs from the "
            f"served {theirs[0]}[{theirs[1]}] -> {theirs[2]}[{theirs[3]}]"
        )

    def _refuse(self, version: int, reason: str, result: RefreshResult) -> None:
        path = self.settings.model_repository / self.settings.model_name / str(version)
        self._refused[version] = (fingerprint(path), reason)
        result.refused[version] = reason
        logger.error("refused model %s version %d: %s", self.settings.model_name, version, reason)
        self.events.on_refused(version, reason)

    def _apply(self) -> None:
        """Tell the rollout what is served; take its route."""
        if self.selection is not None:
            self.route = self.selection.applied(self.served, self.newest)

    def _swap(self, fresh: dict[str, Served], result: RefreshResult, stable: Served | None) -> None:
        """One assignment makes ``fresh`` the served set; what left it retires in the background.
        ``stable``: what a request naming no version gets (None: the newest)."""
        old = self.served
        self.served = fresh
        self.newest = stable if stable is not None else next(iter(fresh.values()), None)
        self._apply()
        for number in result.loaded:
            served = fresh[str(number)]
            self.events.on_served(served.model)
            logger.info(
                "serving %s v%s (%s, sha256 %s…) from %s",
                served.model.name,
                served.model.version,
                served.model.variant,
                served.model.sha256[:12],
                served.model.model_file,
            )
        for key, served in old.items():
            if key not in fresh:
                result.retired.append(int(key))
                self.events.on_retired(served.model)
                task = asyncio.get_running_loop().create_task(self._retire(served))
                self._retiring[task] = served
                task.add_done_callback(self._retiring.pop)
                logger.info("retiring %s v%s", served.model.name, key)

    async def _retire(self, served: Served) -> None:
        """Let every request admitted to ``served`` finish, then free its thread and session.

        A request admitted just before the swap may still be reading its body; its deadline
        is at most ``retire_after_s`` away, so after that nothing new can reach the batcher.
        """
        await asyncio.sleep(self._retire_after_s)
        served.batcher.begin_drain()
        await served.batcher.wait_idle()
        await served.batcher.stop()
