"""Load shapes: steady, step (finds the knee) and spike, selected with ``--shape``.

Locust uses the first ``LoadTestShape`` it finds in a locustfile, so the locustfile exposes one
shape, :class:`SelectableShape`, which reads ``--shape`` and delegates to a plan here. The plans run
on the local runner or the master (shapes never run on workers).
"""

from __future__ import annotations

import copy
import time
from typing import Any

from locust import LoadTestShape

from loadtest.knee import Snapshot, StepStats, find_knee, step_stats

DEFAULT_DURATION_S = 30.0


def _snapshot(runner: Any) -> Snapshot:
    total = runner.stats.total
    return Snapshot(
        at=time.monotonic(),
        requests=total.num_requests,
        failures=total.num_failures,
        histogram=copy.copy(dict(total.response_times)),
    )


class SteadyPlan:
    """``--users`` users (spawned at ``--spawn-rate``) for ``--run-time`` seconds."""

    def __init__(self, options: Any) -> None:
        self.users = int(options.num_users or 1)
        self.spawn_rate = float(options.spawn_rate or self.users)
        self.duration = float(options.run_time or DEFAULT_DURATION_S)

    def tick(self, run_time: float, runner: Any) -> tuple[int, float] | None:
        return (self.users, self.spawn_rate) if run_time < self.duration else None


class SpikePlan:
    """``--users`` users, then ``--spike-users`` for the middle fifth of the run, then back."""

    def __init__(self, options: Any) -> None:
        self.base = int(options.num_users or 1)
        self.peak = int(options.spike_users)
        self.duration = float(options.run_time or DEFAULT_DURATION_S)

    def tick(self, run_time: float, runner: Any) -> tuple[int, float] | None:
        if run_time >= self.duration:
            return None
        in_spike = 0.4 * self.duration <= run_time < 0.6 * self.duration
        # Spawn the whole spike within one second: a spike is sudden by definition.
        return (self.peak if in_spike else self.base, float(max(self.peak, 1)))


class StepPlan:
    """``--step-count`` steps of ``--step-time`` s, adding ``--step-users`` users per step.

    The first ``--step-warmup`` seconds of a step are not measured (users ramping, connections
    opening). At the end of each step its stats are recorded and printed; :meth:`report` names
    the knee.
    """

    def __init__(self, options: Any) -> None:
        self.step_users = int(options.step_users)
        self.step_time = float(options.step_time)
        self.step_count = int(options.step_count)
        self.warmup = min(float(options.step_warmup), self.step_time / 2)
        self.steps: list[StepStats] = []
        self._current = -1
        self._start: Snapshot | None = None

    def _users(self, step: int) -> int:
        return (step + 1) * self.step_users

    def tick(self, run_time: float, runner: Any) -> tuple[int, float] | None:
        step = int(run_time // self.step_time)
        if step != self._current:
            self._finish_step(runner)
            self._current = step
            self._start = None
        if step >= self.step_count:
            return None
        if self._start is None and run_time - step * self.step_time >= self.warmup:
            self._start = _snapshot(runner)
        return self._users(step), float(self.step_users * 10)

    def _finish_step(self, runner: Any) -> None:
        if self._current < 0 or self._start is None:
            return
        stats = step_stats(self._users(self._current), self._start, _snapshot(runner))
        self.steps.append(stats)
        print(f"STEP {len(self.steps)} {stats.row()}", flush=True)

    def report(self, p95_budget_ms: float, max_error_rate: float) -> str:
        knee = find_knee(self.steps, p95_budget_ms, max_error_rate)
        if knee is None:
            return f"KNEE none: no step kept p95 <= {p95_budget_ms:g} ms"
        return f"KNEE {knee.row()}"


class SelectableShape(LoadTestShape):
    """The one shape Locust sees; ``--shape`` picks the plan."""

    use_common_options = True

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.plan: SteadyPlan | StepPlan | SpikePlan | None = None

    def tick(self) -> tuple[int, float] | None:
        runner: Any = self.runner
        plan = self.plan
        if plan is None:
            options = runner.environment.parsed_options
            plan = self.plan = _PLANS[options.shape](options)
        run_time: float = self.get_run_time()  # type: ignore[no-untyped-call]
        return plan.tick(run_time, runner)


_PLANS: dict[str, type[SteadyPlan] | type[StepPlan] | type[SpikePlan]] = {
    "steady": SteadyPlan,
    "step": StepPlan,
    "spike": SpikePlan,
}
