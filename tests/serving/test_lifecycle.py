"""Start-up tuning of the serving process (serving/lifecycle.py): the collector and the GIL."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator

import pytest

from serving.app import create_app
from serving.settings import Settings
from serving.testing import AppClient
from tests.conftest import AppStarter


@pytest.fixture
def collector_state() -> Iterator[None]:
    """Start unfrozen at Python's thresholds; put back what the test found."""
    thresholds = gc.get_threshold()
    gc.unfreeze()
    gc.set_threshold(700, *thresholds[1:])
    yield
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("collector_state")
def test_startup_freezes_the_heap_it_leaves_and_raises_the_young_threshold(
    settings: Settings,
) -> None:
    app = create_app(settings.model_copy(update={"gc_young_threshold": 12_345}))
    assert gc.get_freeze_count() == 0
    with AppClient(app) as client:
        # The loaded model's session and the app itself are out of the collector's reach.
        assert gc.get_freeze_count() > 0
        assert not any(client.app is obj for obj in gc.get_objects())
        assert gc.get_threshold()[0] == 12_345
        assert client.get("/readyz").status_code == 200


@pytest.mark.usefixtures("collector_state")
def test_young_threshold_zero_keeps_pythons(settings: Settings, app_client: AppStarter) -> None:
    with app_client(settings.model_copy(update={"gc_young_threshold": 0})) as client:
        assert client.get("/readyz").status_code == 200
        assert gc.get_threshold()[0] == 700


@pytest.fixture
def switch_interval() -> Iterator[None]:
    """Start at Python's 5 ms; put back what the test found."""
    found = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    yield
    sys.setswitchinterval(found)


@pytest.mark.usefixtures("switch_interval")
@pytest.mark.parametrize(("milliseconds", "seconds"), [(0.25, 0.00025), (0, 0.005)])
def test_startup_sets_the_gil_switch_interval_or_keeps_pythons(
    settings: Settings, milliseconds: float, seconds: float
) -> None:
    app = create_app(settings.model_copy(update={"gil_switch_interval_ms": milliseconds}))
    assert sys.getswitchinterval() == pytest.approx(0.005)
    with AppClient(app) as client:
        assert client.get("/readyz").status_code == 200
        assert sys.getswitchinterval() == pytest.approx(seconds)
