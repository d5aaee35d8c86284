"""The overload benchmark's scenarios run end to end at a tiny scale, alone and through the
shipped proxy: real services (the tiny model), real HAProxy, real h2load."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import overload
from tests.support.tiny_model import synthetic_images

pytestmark = pytest.mark.e2e


def test_every_scenario_runs_alone_and_through_the_proxy(
    tiny_model_repository: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Unpinned: the scenarios' shapes are under test here, not their numbers.
    monkeypatch.setattr(overload, "LOAD_CPU", None)
    body = (synthetic_images(1, seed=3) * 255).astype("uint8").tobytes()
    capacity, fresh, seconds = 60.0, 30.0, 0.5
    shapes = overload.scenarios(body, capacity, fresh, seconds, clients=5, closed_clients=10)
    results = list(
        overload.run_scenarios(tiny_model_repository, body, shapes, capacity, seconds, tmp_path)
    )
    assert [(r.scenario, r.via) for r in results] == [
        (s.name, via) for s in shapes for via in ("alone", "proxy")
    ]
    for result in results:
        done = result.run
        # Every request is accounted for: answered (each with a status), none lost.
        assert (done.timeouts, done.errors) == (0, 0), result.row()
        assert len(done.outcomes) == done.started > 0, result.row()
        assert set(result.statuses) <= {200, 503, 504}, result.row()
        assert result.goodput > 0
        assert result.recovery_s < 10
        assert (result.proxy_cpu_s is not None) == (result.via == "proxy")
        assert result.row().count("|") == overload.TABLE_HEAD[0].count("|")
    # Far below capacity, both ways serve everything.
    for result in results:
        assert result.statuses[200] == result.run.started, result.row()
    assert "overload-haproxy.log" in {p.name for p in tmp_path.iterdir()}


def test_refusal_costs_measure_each_kind_of_answer(
    tiny_model_repository: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """200 and 400 on a default service; 503 (queue full at arrival) and 429 (a key over its
    rate) on one service, each answer as intended (issue 25: a 429 against a 503)."""
    monkeypatch.setattr(overload, "LOAD_CPU", None)
    body = (synthetic_images(1, seed=4) * 255).astype("uint8").tobytes()
    costs = overload.refusal_costs(
        tiny_model_repository, body, 60, tmp_path / "server.log", tmp_path, rounds=2
    )
    assert costs.statuses["200"] == {200: 60}
    assert costs.statuses["400"] == {400: 60}
    assert costs.statuses["503"] == {503: 60}
    # The limited key's one token lets its first request through (then the queue refuses it).
    assert costs.statuses["429"] == {429: 59, 503: 1}
    assert min(costs.ok, costs.shed, costs.limited, costs.infeasible) >= 0  # 10 ms ticks
    (line, _) = costs.lines()
    assert "a 429 (API key over its rate)" in line
    assert "x a 503** (issue 25: <= 1.0 -> " in line
