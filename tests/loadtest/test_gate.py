"""The pass/fail rule of the load-test gate and its one-line summary."""

from __future__ import annotations

import pytest

from loadtest.gate import (
    AccuracyCounter,
    GateConfig,
    RunResult,
    decide,
    judge,
    summary_line,
)

CONFIG = GateConfig(p95_budget_ms=20.0, max_error_rate=0.01)


def result(**overrides: float) -> RunResult:
    values: dict[str, float] = {
        "requests": 1000, "failures": 0, "rps": 500.0,
        "p50_ms": 1.2, "p95_ms": 4.5, "p99_ms": 9.0,
    }  # fmt: skip
    values.update(overrides)
    return RunResult(
        requests=int(values["requests"]),
        failures=int(values["failures"]),
        rps=values["rps"],
        p50_ms=values["p50_ms"],
        p95_ms=values["p95_ms"],
        p99_ms=values["p99_ms"],
    )


def test_within_budget_and_error_rate_passes() -> None:
    verdict = judge(result(p95_ms=20.0, failures=10), CONFIG)
    assert verdict.passed
    assert verdict.exit_code == 0


def test_p95_over_budget_fails() -> None:
    verdict = judge(result(p95_ms=20.01), CONFIG)
    assert not verdict.passed
    assert verdict.exit_code == 1
    assert "p95 20.010 ms > budget 20 ms" in verdict.reasons[0]


def test_error_rate_over_max_fails() -> None:
    verdict = judge(result(failures=11), CONFIG)
    assert not verdict.passed
    assert "error rate 0.0110 > max 0.01" in verdict.reasons[0]


def test_both_exceeded_gives_both_reasons() -> None:
    assert len(judge(result(failures=500, p95_ms=100.0), CONFIG).reasons) == 2


def test_no_request_completed_fails() -> None:
    verdict = judge(result(requests=0, p95_ms=0.0), CONFIG)
    assert not verdict.passed
    assert verdict.reasons == ("no request completed",)


def test_unhandled_exception_in_user_code_fails() -> None:
    crashed = RunResult(10, 0, 1.0, 1.0, 1.0, 1.0, exceptions=1)
    assert not judge(crashed, CONFIG).passed


def test_worker_does_not_judge_even_a_failing_run() -> None:
    failing = result(p95_ms=1000.0, failures=1000)
    assert decide(failing, CONFIG, is_worker=True) is None
    verdict = decide(failing, CONFIG, is_worker=False)
    assert verdict is not None
    assert not verdict.passed


def test_summary_line_is_one_line_with_every_field() -> None:
    res = RunResult(2000, 2, 812.25, 0.4321, 1.234, 5.5, correct=1960, labelled=1998)
    line = summary_line(res, judge(res, CONFIG), CONFIG)
    assert "\n" not in line
    assert line.startswith("SUMMARY rps=812.2")
    for field in ("p50_ms=0.432", "p95_ms=1.234", "p99_ms=5.500", "error_rate=0.0010",
                  "accuracy=0.9810", "verdict=PASS"):  # fmt: skip
        assert field in line


def test_summary_line_names_the_failure() -> None:
    res = result(p95_ms=50.0)
    assert line_ends_fail(summary_line(res, judge(res, CONFIG), CONFIG))


def line_ends_fail(line: str) -> bool:
    return "verdict=FAIL (p95 50.000 ms > budget 20 ms)" in line


def test_options_default_to_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCUST_P95_BUDGET_MS", "7.5")
    monkeypatch.setenv("LOCUST_MAX_ERROR_RATE", "0.2")
    assert GateConfig.defaults_from_env() == GateConfig(7.5, 0.2)


def test_accuracy_is_shipped_and_reset_then_merged() -> None:
    worker = AccuracyCounter()
    worker.add([7, 2, 1], (7, 2, 0))
    payload = worker.take()
    assert payload == {"correct": 2, "labelled": 3}
    assert worker.take() == {"correct": 0, "labelled": 0}
    master = AccuracyCounter()
    master.merge(payload)
    master.merge({"correct": 1, "labelled": 1})
    assert (master.correct, master.labelled) == (3, 4)
