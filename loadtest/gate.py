"""The pass/fail decision of a load test: p95 within budget and error rate within bound.

Pure functions over numbers taken from Locust's aggregated stats, so the rule is unit-tested
without starting Locust. Only the process that holds the aggregated stats judges: a local runner
or the master. A worker's stats are reset after each report to the master, so a worker judging
would decide on a few seconds of data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_P95_BUDGET_MS = 50.0
DEFAULT_MAX_ERROR_RATE = 0.01
ENV_BUDGET = "LOCUST_P95_BUDGET_MS"
ENV_MAX_ERROR_RATE = "LOCUST_MAX_ERROR_RATE"


@dataclass(frozen=True, slots=True)
class GateConfig:
    """Budget for the whole-run p95 latency (ms) and the highest tolerated failure ratio."""

    p95_budget_ms: float = DEFAULT_P95_BUDGET_MS
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE

    @classmethod
    def defaults_from_env(cls) -> GateConfig:
        """Defaults for the command-line options: env vars if set, else the built-in values."""
        return cls(
            p95_budget_ms=float(os.environ.get(ENV_BUDGET, DEFAULT_P95_BUDGET_MS)),
            max_error_rate=float(os.environ.get(ENV_MAX_ERROR_RATE, DEFAULT_MAX_ERROR_RATE)),
        )


@dataclass(frozen=True, slots=True)
class RunResult:
    """What a finished run measured (latencies in ms)."""

    requests: int
    failures: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    correct: int = 0
    labelled: int = 0
    exceptions: int = 0

    @property
    def error_rate(self) -> float:
        return self.failures / self.requests if self.requests else 0.0

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None


@dataclass(frozen=True, slots=True)
class Verdict:
    passed: bool
    reasons: tuple[str, ...] = field(default_factory=tuple)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1


def judge(result: RunResult, config: GateConfig) -> Verdict:
    """PASS only if requests completed, p95 <= budget, error rate <= bound, no task crashed."""
    reasons = []
    if result.requests == 0:
        reasons.append("no request completed")
    if result.p95_ms > config.p95_budget_ms:
        reasons.append(f"p95 {result.p95_ms:.3f} ms > budget {config.p95_budget_ms:g} ms")
    if result.error_rate > config.max_error_rate:
        reasons.append(f"error rate {result.error_rate:.4f} > max {config.max_error_rate:g}")
    if result.exceptions:
        reasons.append(f"{result.exceptions} unhandled exception(s) in user code")
    return Verdict(passed=not reasons, reasons=tuple(reasons))


def decide(result: RunResult, config: GateConfig, *, is_worker: bool) -> Verdict | None:
    """The verdict, or None on a worker: its stats are a slice, the master judges the whole."""
    return None if is_worker else judge(result, config)


def summary_line(
    result: RunResult, verdict: Verdict, config: GateConfig, live: str | None = None
) -> str:
    """The one line printed last by every run; stable ``key=value`` fields for grep and CI logs.

    ``live`` is the service's own view of its quality (``/v1/quality``, e.g.
    ``live_accuracy=0.9712 live_labelled=480``), printed beside the verdict when given.
    """
    accuracy = "n/a" if result.accuracy is None else f"{result.accuracy:.4f}"
    line = (
        f"SUMMARY rps={result.rps:.1f} p50_ms={result.p50_ms:.3f} p95_ms={result.p95_ms:.3f} "
        f"p99_ms={result.p99_ms:.3f} requests={result.requests} "
        f"error_rate={result.error_rate:.4f} accuracy={accuracy} "
        f"budget_p95_ms={config.p95_budget_ms:g} max_error_rate={config.max_error_rate:g} "
        f"{live + ' ' if live else ''}verdict={'PASS' if verdict.passed else 'FAIL'}"
    )
    if verdict.reasons:
        line += " (" + "; ".join(verdict.reasons) + ")"
    return line


@dataclass(slots=True)
class AccuracyCounter:
    """Correct labels seen by this process; workers ship and reset it with every stats report."""

    correct: int = 0
    labelled: int = 0

    def add(self, predicted: list[int], expected: tuple[int, ...]) -> None:
        self.labelled += len(expected)
        self.correct += sum(p == e for p, e in zip(predicted, expected, strict=True))

    def take(self) -> dict[str, int]:
        """The counts so far, as a report payload, and start again from zero."""
        payload = {"correct": self.correct, "labelled": self.labelled}
        self.correct = self.labelled = 0
        return payload

    def merge(self, payload: dict[str, int]) -> None:
        self.correct += int(payload.get("correct", 0))
        self.labelled += int(payload.get("labelled", 0))
