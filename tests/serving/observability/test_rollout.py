"""Rollouts as metrics and spans (``RolloutMetrics``): decisions counted by action and decider,
a span only for a rollout's own decisions, refused policy files counted, and gauges that follow
the running rollout, with the series of versions that left it removed."""

from __future__ import annotations

import math

import msgspec
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from serving.observability.rollout import RolloutMetrics
from serving.rollout.evidence import Evidence
from serving.rollout.report import RolloutReport, figures, report
from serving.rollout.state import DecidedBy, Decision, DecisionAction
from serving.rollout_service import RolloutEvents


def decision(action: DecisionAction, by: DecidedBy = "judge") -> Decision:
    return Decision(at=1.0, action=action, by=by, stable=1, candidate=2, share=0.05, reason="why")


def running(stable: int, candidate: int, rows: int) -> RolloutReport:
    evidence = Evidence.empty(stable, candidate, 10)
    counts = msgspec.structs.replace(evidence.stable, rows=rows, errors=1)
    shown = figures(msgspec.structs.replace(evidence, stable=counts))
    return msgspec.structs.replace(
        report(None, None, "mnist"),
        running=True, stable=stable, candidate=candidate, share=0.25, shadow_share=1.0,
        evidence=shown,
    )  # fmt: skip


def test_decisions_are_counted_and_a_rollouts_own_are_traced(
    registry: CollectorRegistry,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    events: RolloutEvents = RolloutMetrics(registry, provider.get_tracer("test"))
    made: list[tuple[DecisionAction, DecidedBy]] = [
        ("served", "repository"), ("started", "repository"), ("promoted", "judge"),
        ("promoted", "judge"),
    ]  # fmt: skip
    for action, by in made:
        events.on_decision(decision(action, by), "mnist")
    events.on_policy_refused()
    value = registry.get_sample_value
    assert value("inference_rollout_decisions_total", {"action": "promoted", "by": "judge"}) == 2
    assert value("inference_rollout_decisions_total", {"action": "served", "by": "repository"}) == 1
    assert value("inference_rollout_policy_refused_total") == 1
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["rollout.decision"] * 3  # "served": counted, not traced
    assert [e.name for s in spans for e in s.events] == [
        "rollout.started", "rollout.promoted", "rollout.promoted"
    ]  # fmt: skip
    assert spans[0].events[0].attributes is not None
    assert spans[0].events[0].attributes["model"] == "mnist"


def test_the_gauges_follow_the_running_rollout_and_drop_versions_that_left(
    registry: CollectorRegistry,
) -> None:
    metrics = RolloutMetrics(registry, None)
    value = registry.get_sample_value
    assert value("inference_rollout_running") == 0
    assert math.isnan(value("inference_rollout_agreement") or 0.0)
    metrics.on_report(running(1, 2, rows=10))
    assert value("inference_rollout_running") == 1
    assert value("inference_rollout_canary_share") == 0.25
    assert value("inference_rollout_rows", {"role": "stable", "version": "1"}) == 10
    assert value("inference_rollout_error_rate", {"role": "stable", "version": "1"}) == 0.1
    candidate = value("inference_rollout_mean_confidence", {"role": "candidate", "version": "2"})
    assert candidate is not None
    assert math.isnan(candidate)  # no rows yet: unknown, not 0
    metrics.on_report(running(2, 3, rows=4))  # promoted, and a new candidate
    assert value("inference_rollout_rows", {"role": "stable", "version": "1"}) is None
    assert value("inference_rollout_rows", {"role": "candidate", "version": "2"}) is None
    assert value("inference_rollout_rows", {"role": "stable", "version": "2"}) == 4
    metrics.on_report(report(None, None, "mnist"))  # over
    assert value("inference_rollout_running") == 0
    assert value("inference_rollout_rows", {"role": "stable", "version": "2"}) is None


def test_with_metrics_and_tracing_off_nothing_is_recorded() -> None:
    metrics = RolloutMetrics(None, None)
    metrics.on_decision(decision("promoted"), "mnist")
    metrics.on_policy_refused()
    metrics.on_report(running(1, 2, rows=3))
    assert not metrics.enabled
