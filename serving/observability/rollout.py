"""Rollouts as metrics and spans: ``serving.rollout_service.RolloutEvents``.

- ``inference_rollout_decisions{action, by}``: every decision, counted by the worker whose
  transaction made it (bounded: the state machine's actions and deciders).
- ``inference_rollout_policy_refused``: ``rollout.toml`` files refused.
- Gauges of the running rollout from the evidence merged over all workers (every worker sets
  the same values, so they combine with ``mostrecent``): running, the canary and shadow shares,
  agreement, and per version (labels ``role`` and ``version``) rows, mean confidence, error
  rate, live accuracy and p95 compute. Only stable and candidate are live: when the versions
  change, the previous series are set to NaN and removed.
- A span ``rollout.decision`` per decision of a rollout (not the plain start or hot swap
  without one), with the decision as a span event.
"""

from __future__ import annotations

from opentelemetry.trace import Tracer
from prometheus_client import CollectorRegistry, Counter, Gauge

from serving.rollout.report import RolloutReport, VersionFigures
from serving.rollout.state import Decision

PREFIX = "inference_rollout"
NAN = float("nan")
_UNTRACED = frozenset({"served", "replaced"})


class RolloutMetrics:
    """Implements ``RolloutEvents``; ``registry`` None: metrics off, ``tracer`` None: no spans."""

    def __init__(self, registry: CollectorRegistry | None, tracer: Tracer | None) -> None:
        self.tracer = tracer
        self.enabled = registry is not None
        if registry is None:
            return
        r = registry
        self.decisions = Counter(
            f"{PREFIX}_decisions",
            "Rollout decisions by action (started, stepped, promoted, rolled_back, ...) and by "
            "whom (judge, admin, repository, policy, restart).",
            ["action", "by"], registry=r,
        )  # fmt: skip
        self.policy_refused = Counter(
            f"{PREFIX}_policy_refused",
            "rollout.toml files refused (syntax, unknown key, bad value); the policy stayed.",
            registry=r,
        )

        def gauge(name: str, text: str, labels: list[str] | None = None) -> Gauge:
            return Gauge(
                f"{PREFIX}_{name}", text, labels or [], multiprocess_mode="mostrecent", registry=r
            )

        self.running = gauge("running", "1 while a rollout runs (a candidate beside stable).")
        self.canary_share = gauge("canary_share", "Share of requests the canary candidate answers.")
        self.shadow_share = gauge("shadow_share", "Share of batches the shadow candidate computes.")
        self.agreement = gauge(
            "agreement",
            "Share of rows both versions computed where their classes agree (NaN: none).",
        )
        per_version = ["role", "version"]
        self.rows = gauge("rows", "Rows each version computed in this rollout.", per_version)
        self.mean_confidence = gauge(
            "mean_confidence", "Mean top-1 confidence of each version.", per_version
        )
        self.error_rate = gauge(
            "error_rate", "Share of each version's rows whose batch failed.", per_version
        )
        self.accuracy = gauge(
            "accuracy", "Live accuracy of each version from feedback labels.", per_version
        )
        self.p95_compute = gauge(
            "p95_compute_seconds", "p95 batch compute time of each version.", per_version
        )
        self._per_version = (
            self.rows, self.mean_confidence, self.error_rate, self.accuracy, self.p95_compute
        )  # fmt: skip
        self._live: list[tuple[str, str]] = []
        self.running.set(0)
        self.canary_share.set(0)
        self.shadow_share.set(0)
        self.agreement.set(NAN)

    def on_decision(self, decision: Decision, model: str) -> None:
        if self.enabled:
            self.decisions.labels(decision.action, decision.by).inc()
        # "served" and "replaced" are what every start and every hot swap without a rollout
        # decide: counted, but no trace of their own (a trace is for a rollout's decisions).
        if self.tracer is not None and decision.action not in _UNTRACED:
            with self.tracer.start_as_current_span("rollout.decision") as span:
                span.add_event(
                    f"rollout.{decision.action}",
                    {
                        "model": model,
                        "by": decision.by,
                        "stable": decision.stable if decision.stable is not None else -1,
                        "candidate": decision.candidate if decision.candidate is not None else -1,
                        "share": decision.share,
                        "reason": decision.reason,
                    },
                )

    def on_policy_refused(self) -> None:
        if self.enabled:
            self.policy_refused.inc()

    def on_report(self, current: RolloutReport) -> None:
        if not self.enabled:
            return
        self.running.set(1 if current.running else 0)
        self.canary_share.set(current.share)
        self.shadow_share.set(current.shadow_share)
        evidence = current.evidence if current.running else None
        live: list[tuple[str, str]] = []
        if evidence is not None:
            agreement = evidence.pairs.agreement
            self.agreement.set(agreement if agreement is not None else NAN)
            for role, figures in (("stable", evidence.stable), ("candidate", evidence.candidate)):
                labels = (role, str(figures.version))
                live.append(labels)
                self._set(labels, figures)
        else:
            self.agreement.set(NAN)
        for labels in self._live:
            if labels not in live:
                for gauge in self._per_version:
                    gauge.labels(*labels).set(NAN)  # multiprocess files keep the last value
                    gauge.remove(*labels)
        self._live = live

    def _set(self, labels: tuple[str, str], figures: VersionFigures) -> None:
        def value(number: float | None) -> float:
            return NAN if number is None else number

        self.rows.labels(*labels).set(figures.rows)
        self.mean_confidence.labels(*labels).set(value(figures.mean_confidence))
        self.error_rate.labels(*labels).set(value(figures.error_rate))
        self.accuracy.labels(*labels).set(value(figures.accuracy))
        p95 = figures.p95_compute_ms
        self.p95_compute.labels(*labels).set(NAN if p95 is None else p95 / 1000)
