"""The rollout inside one worker (``serving/rollout_service.py``), unit by unit: the second
version computes the same rows in the same hop and never fails the answer, a canary's route is
sticky per client, the settings are the default policy, and a worker with no rollout serves as
before. The wiring through the app is tested in tests/serving/rollout/test_wiring.py."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from serving.batching import NullObserver
from serving.model import LoadedModel, load_model
from serving.rollout.policy import Policy
from serving.rollout_service import (
    CanaryRoute,
    NullRolloutEvents,
    RolloutEvents,
    RolloutService,
    SecondPredict,
    default_policy,
)
from serving.settings import Settings
from serving.versions import Choice, Served
from tests.support.tiny_model import synthetic_images, write_model_version


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory: pytest.TempPathFactory) -> tuple[LoadedModel, LoadedModel]:
    root = tmp_path_factory.mktemp("models")
    write_model_version(root, version=1, seed=1)
    write_model_version(root, version=2, seed=2)
    load = (load_model(Settings(model_repository=root, model_version=v)) for v in (1, 2))
    return next(load), next(load)


class Broken:
    """A session that fails every run: a candidate onnxruntime cannot compute."""

    def run(self, outputs: Any, feeds: Any) -> Any:
        raise RuntimeError("candidate exploded")

    def get_inputs(self) -> Any:
        return []


def test_the_second_version_computes_the_same_rows_beside_the_answer(
    two_versions: tuple[LoadedModel, LoadedModel],
) -> None:
    stable, candidate = two_versions
    pixels = synthetic_images(6, seed=4)
    outputs = SecondPredict(stable, candidate, share=1.0)(pixels)
    np.testing.assert_allclose(outputs.probabilities, stable.predict(pixels).probabilities)
    second = outputs.second
    assert second is not None
    assert second.version == "2"
    assert second.error is None
    assert second.outputs is not None
    np.testing.assert_allclose(
        second.outputs.probabilities, candidate.predict(pixels).probabilities
    )
    assert second.seconds >= 0


def test_a_failing_second_version_is_evidence_not_a_failed_batch(
    two_versions: tuple[LoadedModel, LoadedModel],
) -> None:
    stable, candidate = two_versions
    broken = dataclasses.replace(candidate, session=Broken())
    outputs = SecondPredict(stable, broken, share=1.0)(synthetic_images(3))
    assert outputs.rows == 3  # answered by the first version
    assert outputs.second is not None
    assert outputs.second.outputs is None
    assert isinstance(outputs.second.error, RuntimeError)


def test_a_failing_first_version_fails_the_batch_as_without_a_rollout(
    two_versions: tuple[LoadedModel, LoadedModel],
) -> None:
    stable, candidate = two_versions
    with pytest.raises(RuntimeError, match="exploded"):
        SecondPredict(dataclasses.replace(stable, session=Broken()), candidate, 1.0)(
            synthetic_images(1)
        )


def test_a_shadow_share_of_zero_computes_no_second_opinion(
    two_versions: tuple[LoadedModel, LoadedModel],
) -> None:
    stable, candidate = two_versions
    predict = SecondPredict(stable, candidate, share=0.0)
    assert all(predict(synthetic_images(1, seed=i)).second is None for i in range(20))


def test_a_canary_route_keeps_each_client_on_one_version(
    two_versions: tuple[LoadedModel, LoadedModel],
) -> None:
    stable, candidate = (Served(m, None) for m in two_versions)  # type: ignore[arg-type]
    route = CanaryRoute(stable, candidate, share=0.5, salt="rollout-1")
    clients = [f"client-{i}".encode() for i in range(200)]
    first = [route.pick(c) for c in clients]
    assert [route.pick(c) for c in clients] == first  # sticky
    assert {s.model.version for s in first} == {"1", "2"}  # and split
    assert CanaryRoute(stable, candidate, 0.0, "s").pick(b"anyone") is stable
    assert CanaryRoute(stable, candidate, 1.0, "s").pick(None) is candidate


def test_the_rollout_settings_are_the_default_policy() -> None:
    settings = Settings(
        rollout_mode="canary",
        rollout_canary_share=0.1,
        rollout_shadow_share=0.5,
        rollout_min_samples=300,
        rollout_evaluation_interval_s=2.5,
    )
    policy = default_policy(settings)
    assert (policy.mode, policy.canary_share, policy.shadow_share) == ("canary", 0.1, 0.5)
    assert (policy.min_samples, policy.evaluation_interval_s) == (300, 2.5)
    assert policy.rules == Policy().rules  # rules come from rollout.toml only
    assert default_policy(Settings()) == Policy()


@pytest.fixture
def service(tiny_model_repository: Path, tmp_path: Path) -> Iterator[RolloutService]:
    settings = Settings(
        model_repository=tiny_model_repository, rollout_store=tmp_path / "rollout.sqlite3"
    )
    rollout = RolloutService(settings, NullObserver())
    yield rollout
    rollout.close()


def test_without_a_rollout_the_version_policy_decides_as_before(service: RolloutService) -> None:
    events: RolloutEvents = NullRolloutEvents()  # the default: the Protocol, checked by mypy
    assert isinstance(service.events, type(events))
    assert service.choose([1]) == Choice()  # replace mode, nothing running
    assert service.applied({}, None) is None  # nothing attached, no route
    report = service.report()
    assert (report.running, report.mode) == (False, "replace")
    after = service.promote("nothing to promote")
    assert after is not None  # the state the start recorded, unchanged in what it serves
    assert (after.running, after.stable, after.candidate) == (False, 1, None)
