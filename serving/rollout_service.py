"""A model's rollout inside one worker: the core of serving/rollout/ attached to the request path.

Each concern attaches at one place (docs/rollout.md, "For developers"):

- **what is served** (serving/versions.py calls :meth:`RolloutService.choose` at every refresh,
  in a thread): the policy file is re-read, the shared state brought in line with the
  repository (``RolloutStore.observe``), and the state's stable and candidate are served. In
  mode ``replace`` with no rollout running, the version policy decides exactly as before.
- **which version answers** (``Service.admit``): a canary's :class:`CanaryRoute`, sticky per
  ``X-Client-ID``; no route at all otherwise (one ``is None`` check per request).
- **the second version on the same rows** (the batcher's ``attach``): while a rollout runs, the
  batcher of the version that answers computes each batch with :class:`SecondPredict`: the
  answering version, then, in the same inference-thread hop and on the same merged input, the
  other one (shadow: the candidate behind stable, for ``shadow_share`` of the batches; canary:
  stable behind the candidate). The second run's exception is caught, so it never fails the
  answer; its result rides along in ``Outputs.second`` and is never sent.
- **evidence** (:class:`RecordingObserver`, the same batcher's observer while attached): once
  per batch, vectorised, into the worker's ``EvidenceRecorder``. Feedback labels
  (:meth:`RolloutService.on_feedback`, a feedback listener) score the version that answered, or
  both when the prediction id names both (format 2).
- **judgement** (:meth:`RolloutService.run`, one task per worker): every tick the evidence is
  flushed to the shared store and evaluated; the store lets one worker judge per interval. A
  changed state is applied through the same refresh as a version poll.
- **decisions** (``RolloutEvents``, observability's): each decision is logged, counted and
  recorded as a span event by the worker whose transaction made it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from serving.batching import Batcher, BatchObserver, Outputs, QueuedRequest, RejectReason
from serving.batching.request import SecondOpinion
from serving.feedback.store import Outcome
from serving.model import LoadedModel
from serving.rollout.evidence import Evidence, EvidenceRecorder, Role
from serving.rollout.judge import Verdict
from serving.rollout.policy import Policy, PolicyLoad, PolicySource
from serving.rollout.report import RolloutReport, report
from serving.rollout.routing import to_candidate
from serving.rollout.state import Decision, RolloutState
from serving.rollout.store import RolloutStore
from serving.settings import Settings
from serving.versions import Choice, Served, fingerprint

logger = logging.getLogger(__name__)

#: Longest pause between two looks at the shared state while a rollout runs: how soon a worker
#: applies another worker's decision (the judge's own pace is the policy's interval).
TICK_S = 1.0


def default_policy(settings: Settings) -> Policy:
    """The policy of a model without ``rollout.toml``, and the base a file overrides."""
    return Policy(
        mode=settings.rollout_mode,
        canary_share=settings.rollout_canary_share,
        shadow_share=settings.rollout_shadow_share,
        min_samples=settings.rollout_min_samples,
        evaluation_interval_s=settings.rollout_evaluation_interval_s,
    )


class RolloutEvents(Protocol):
    """What observability hears about rollouts (serving/observability/rollout.py)."""

    def on_decision(self, decision: Decision, model: str) -> None:
        """A decision this worker made (each decision is reported by one worker only)."""

    def on_policy_refused(self) -> None:
        """A ``rollout.toml`` was refused (once per content)."""

    def on_report(self, current: RolloutReport) -> None:
        """The merged figures after a tick (per-version gauges)."""


class NullRolloutEvents:
    def on_decision(self, decision: Decision, model: str) -> None:
        pass

    def on_policy_refused(self) -> None:
        pass

    def on_report(self, current: RolloutReport) -> None:
        pass


class SecondPredict:
    """A batcher's compute during a rollout: ``first`` answers, ``second`` computes the same
    rows in the same hop (for ``share`` of the batches) and never fails the batch."""

    def __init__(self, first: LoadedModel, second: LoadedModel, share: float) -> None:
        self.first = first
        self.second = second
        self.share = share

    def __call__(self, batch: npt.NDArray[np.float32]) -> Outputs:
        outputs = self.first.predict(batch)  # raises as without a rollout: the batch fails
        if self.share < 1.0 and random.random() >= self.share:
            return outputs
        started = time.perf_counter()
        try:
            other: Outputs | None = self.second.predict(batch)
            error: BaseException | None = None
            if other is not None and other.rows != outputs.rows:
                raise RuntimeError(f"returned {other.rows} rows for {outputs.rows}")
        except Exception as exc:  # the second version's failure is evidence, not an error
            other, error = None, exc
        seconds = time.perf_counter() - started
        return outputs._replace(second=SecondOpinion(self.second.version, other, seconds, error))


class RecordingObserver:
    """The attached batcher's observer during a rollout: the service's observer, and the batch
    recorded as evidence (``role``: the version that answers through this batcher)."""

    def __init__(self, inner: BatchObserver, rollout: RolloutService, role: Role) -> None:
        self.inner = inner
        self.rollout = rollout
        self.role = role

    def on_enqueued(self, request: QueuedRequest) -> None:
        self.inner.on_enqueued(request)

    def on_batch_start(self, batch_id: int, requests: Sequence[QueuedRequest], rows: int) -> None:
        self.inner.on_batch_start(batch_id, requests, rows)

    def on_batch_end(
        self,
        batch_id: int,
        requests: Sequence[QueuedRequest],
        inputs: npt.NDArray[np.float32],
        outputs: Outputs | None,
        error: BaseException | None,
        compute_seconds: float,
    ) -> None:
        self.inner.on_batch_end(batch_id, requests, inputs, outputs, error, compute_seconds)
        self.rollout.record(self.role, int(inputs.shape[0]), outputs, compute_seconds)

    def on_rejected(
        self, reason: RejectReason, rows: int, request: QueuedRequest | None = None
    ) -> None:
        self.inner.on_rejected(reason, rows, request)


@dataclass(frozen=True, slots=True)
class CanaryRoute:
    """A canary's split: ``share`` of the clients (by ``X-Client-ID``, else at random) get the
    candidate."""

    stable: Served
    candidate: Served
    share: float
    salt: str

    def pick(self, client: bytes | None) -> Served:
        name = client.decode("latin-1") if client else None
        return self.candidate if to_candidate(name, self.share, self.salt) else self.stable


def _key(state: RolloutState | None) -> tuple[object, ...]:
    """What the served set and the attachments depend on."""
    if state is None:
        return ()
    return (state.stable, state.candidate, state.rollout_id, state.mode, state.step,
            state.policy.mode, state.policy.shadow_share, tuple(state.refused))  # fmt: skip


class RolloutService:
    """One worker's part in its model's rollout (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        observer: BatchObserver,
        events: RolloutEvents | None = None,
        *,
        classes: int = 10,
    ) -> None:
        """``observer``: the service's batch observer, which the recording one wraps."""
        self.settings = settings
        self.model = settings.model_name
        self.model_dir = settings.model_repository / settings.model_name
        self.observer = observer
        self.events: RolloutEvents = events if events is not None else NullRolloutEvents()
        self.classes = classes
        self.store = RolloutStore(settings.rollout_store, self.model, classes=classes)
        self.source = PolicySource(self.model_dir, default_policy(settings))
        self.boot = settings.rollout_boot or secrets.token_hex(8)
        #: This worker's row of evidence (several apps may share a process in tests).
        self.worker = f"{os.getpid()}-{id(self):x}"
        self.state: RolloutState | None = None
        #: What :meth:`applied` last attached for (see ``_key``).
        self._applied: tuple[object, ...] | None = None
        self._started = False
        # The recorder is fed by the event loop (batches) and feedback threads (labels).
        self._lock = threading.Lock()
        self._recorder: EvidenceRecorder | None = None
        self._recording: int | None = None  # the rollout id the recorder is for
        self._attached: list[Batcher] = []

    # ------------------------------------------------------------------ what is served
    def choose(self, present: list[int]) -> Choice:
        """Re-read the policy, bring the shared state in line with the repository; what to
        serve (blocking: called in a thread by the version refresh)."""
        fingerprints = {v: repr(fingerprint(self.model_dir / str(v))) for v in present}
        load = self.source.read()
        self._report_policy(load)
        now = time.time()
        if not self._started:
            outcome = self.store.start(
                fingerprints, load.policy, now, boot=self.boot,
                resume_window_s=self.settings.rollout_resume_window_s,
            )  # fmt: skip
            self._started = True
            logger.info("rollout of %s at start: %s (%s)", self.model, outcome.action,
                        outcome.reason)  # fmt: skip
        state = self.store.observe(fingerprints, load.policy, now)
        self._announce()
        self.state = state
        refused = {v: r.reason for v, r in state.refused.items()}
        if not state.running and state.policy.mode == "replace":
            return Choice(refused=refused)
        return Choice(stable=state.stable, versions=state.served, refused=refused)

    def failed(self, version: int, reason: str) -> None:
        """The candidate could not be loaded: it is rolled back with the loader's reason."""
        state = self.state
        if state is None or state.candidate != version:
            return
        self.state = self.store.rollback(
            time.time(), f"it could not be loaded: {reason}", by="repository"
        )
        self._announce()

    def applied(self, served: Mapping[str, Served], stable: Served | None) -> CanaryRoute | None:
        """Attach the second version and the recorder to the answering version's batcher (or
        detach everything when no rollout runs); the canary's route, if any. Event loop."""
        state = self.state
        stable_served = served.get(str(state.stable)) if state is not None else None
        candidate = served.get(str(state.candidate)) if state is not None else None
        if state is None or stable_served is None or candidate is None or stable is None:
            self._detach()
            self._set_recorder(None)
            return None
        self._set_recorder(state)
        if state.mode == "shadow":
            self._attach(
                stable_served.batcher,
                SecondPredict(stable_served.model, candidate.model, state.shadow_share),
                Role.STABLE,
            )
            return None
        self._attach(
            candidate.batcher, SecondPredict(candidate.model, stable_served.model, 1.0),
            Role.CANDIDATE,
        )  # fmt: skip
        return CanaryRoute(stable_served, candidate, state.share, state.salt)

    def _attach(self, batcher: Batcher, predict: SecondPredict, role: Role) -> None:
        self._detach()
        batcher.attach(predict, RecordingObserver(self.observer, self, role))
        self._attached = [batcher]

    def _detach(self) -> None:
        for batcher in self._attached:
            batcher.attach(None, None)
        self._attached = []

    def _set_recorder(self, state: RolloutState | None) -> None:
        with self._lock:
            if state is None or state.stable is None or state.candidate is None:
                self._recorder, self._recording = None, None
            elif self._recording != state.rollout_id:
                self._recorder = EvidenceRecorder(state.stable, state.candidate, self.classes)
                self._recording = state.rollout_id

    # ------------------------------------------------------------------ evidence
    def record(self, role: Role, rows: int, outputs: Outputs | None, seconds: float) -> None:
        """One batch of the attached batcher (event loop): vectorised, no loop over rows."""
        with self._lock:
            recorder = self._recorder
            if recorder is None:
                return
            if outputs is None:
                recorder.record(role, None, seconds, rows)
                return
            second = outputs.second
            if second is None:
                recorder.record(role, outputs.probabilities, seconds, rows)
                return
            other = second.outputs.probabilities if second.outputs is not None else None
            own = max(seconds - second.seconds, 0.0)  # the batch's time held both runs
            if role is Role.STABLE:
                recorder.record_pair(outputs.probabilities, own, other, second.seconds, rows)
            else:
                recorder.record_pair(other, second.seconds, outputs.probabilities, own, rows)

    def on_feedback(self, outcome: Outcome) -> None:
        """Accepted labels (a feedback listener, in the thread that stored them)."""
        if not outcome.accepted:
            return
        with self._lock:
            recorder = self._recorder
            if recorder is None:
                return
            paired: list[tuple[int, int, int]] = []  # true, stable's, candidate's
            alone: dict[Role, list[tuple[int, int]]] = {Role.STABLE: [], Role.CANDIDATE: []}
            for item in outcome.accepted:
                role = recorder.role_of(item.version)
                if role is None:
                    continue
                other = (
                    recorder.role_of(item.second_version)
                    if item.second_version is not None
                    else None
                )
                if other is not None and other is not role and item.second_predicted is not None:
                    stable_label, candidate_label = (
                        (item.predicted, item.second_predicted)
                        if role is Role.STABLE
                        else (item.second_predicted, item.predicted)
                    )
                    paired.append((item.true_label, stable_label, candidate_label))
                else:
                    alone[role].append((item.true_label, item.predicted))
            if paired:
                columns = np.asarray(paired, dtype=np.int64)
                recorder.record_paired_labels(columns[:, 0], columns[:, 1], columns[:, 2])
            for role, rows in alone.items():
                if rows:
                    columns = np.asarray(rows, dtype=np.int64)
                    recorder.record_labels(role, columns[:, 0], columns[:, 1])

    def _take(self) -> tuple[int, Evidence] | None:
        with self._lock:
            if self._recorder is None or self._recording is None or not self._recorder.pending:
                return None
            return self._recording, self._recorder.take()

    # ------------------------------------------------------------------ judgement
    async def run(self, refresh: Callable[[], Awaitable[object]]) -> None:
        """Every tick while a rollout runs: flush this worker's evidence, let the store judge,
        and apply a changed state (``refresh``: the version refresh). Never dies."""
        while True:
            state = self.state
            interval = state.policy.evaluation_interval_s if state is not None else TICK_S
            await asyncio.sleep(min(interval, TICK_S))
            if state is None or not state.running:
                continue
            try:
                taken = self._take()
                current = await asyncio.to_thread(self._flush_and_judge, taken)
                if current is not None and _key(current) != _key(self.state):
                    self.state = current
                    await refresh()
            except Exception:  # the rollout must never take serving down with it
                logger.exception("rollout evaluation failed; the served versions keep serving")

    def _flush_and_judge(self, taken: tuple[int, Evidence] | None) -> RolloutState | None:
        now = time.time()
        if taken is not None:
            self.store.add_evidence(self.worker, taken[0], taken[1], now)
        evaluation = self.store.evaluate(now)
        if evaluation.verdict is not None:
            self._log_verdict(evaluation.verdict)
        self._announce()
        current = evaluation.state
        self.events.on_report(report(current, self.store.evidence(), self.model))
        return current

    def _log_verdict(self, verdict: Verdict) -> None:
        level = logging.DEBUG if verdict.action == "continue" else logging.INFO
        logger.log(level, "rollout of %s judged: %s (%s)", self.model, verdict.action,
                   verdict.reason)  # fmt: skip

    def _announce(self) -> None:
        """Log, count and trace the decisions this worker's transactions made."""
        for decision in self.store.take_made():
            logger.info(
                "rollout of %s: %s by the %s: %s", self.model, decision.action, decision.by,
                decision.reason,
            )  # fmt: skip
            self.events.on_decision(decision, self.model)

    def _report_policy(self, load: PolicyLoad) -> None:
        if not load.changed:
            return
        if load.status == "refused":
            logger.error("rollout policy refused: %s", load.error)
            self.events.on_policy_refused()
        else:
            logger.info("rollout policy of %s: mode %s (%s)", self.model, load.policy.mode,
                        load.status)  # fmt: skip

    # ------------------------------------------------------------------ reading and admin
    def report(self) -> RolloutReport:
        """``GET /v1/rollout`` (blocking: the shared store)."""
        return report(self.store.state(), self.store.evidence(), self.model)

    def promote(self, reason: str) -> RolloutState | None:
        """Admin: the candidate becomes stable now (blocking); apply with a refresh."""
        return self._admin(self.store.promote, reason)

    def rollback(self, reason: str) -> RolloutState | None:
        """Admin: the candidate is refused now (blocking); apply with a refresh."""
        return self._admin(self.store.rollback, reason)

    def _admin(
        self, change: Callable[[float, str], RolloutState | None], reason: str
    ) -> RolloutState | None:
        taken = self._take()
        if taken is not None:  # this worker's last evidence belongs in the record
            self.store.add_evidence(self.worker, taken[0], taken[1], time.time())
        state = change(time.time(), reason)
        self._announce()
        return state

    def close(self) -> None:
        """At stop: flush the last evidence, close the file (blocking)."""
        taken = self._take()
        try:
            if taken is not None:
                self.store.add_evidence(self.worker, taken[0], taken[1], time.time())
        finally:
            self.store.close()
