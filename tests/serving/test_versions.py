"""The version policy and hot swaps (serving/versions.py) on real tiny models in a real
repository: several versions served at once, new versions swapped in, bad ones refused."""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from model_repository.layout import METADATA_FILE
from serving.batching import NullObserver
from serving.lifecycle import Service, UnknownVersionError
from serving.model import LoadedModel
from serving.settings import Settings
from serving.versions import wanted_versions
from tests.conftest import AppStarter
from tests.support.tiny_model import synthetic_images, write_model_version
from tests.support.waiting import until


@pytest.mark.parametrize(
    ("present", "count", "pinned", "refused", "expected"),
    [
        ([1, 2, 3], 1, None, set(), [3]),
        ([1, 2, 3], 2, None, set(), [3, 2]),
        ([1, 2, 3], 1, 1, set(), [3, 1]),
        ([1, 2, 3], 0, 2, set(), [2]),
        ([1, 2, 3], 1, None, {3}, [2]),
        ([1, 2, 3], 5, None, {2}, [3, 1]),
        ([1, 2, 3], 1, 7, set(), [3]),
    ],
)
def test_wanted_versions(
    present: list[int], count: int, pinned: int | None, refused: set[int], expected: list[int]
) -> None:
    assert wanted_versions(present, count, pinned, refused) == expected


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    write_model_version(root, "mnist", 1, seed=1)
    write_model_version(root, "mnist", 2, seed=2)
    return root


class Events:
    """Records what the service reports (the metrics plugin implements the same three calls)."""

    def __init__(self) -> None:
        self.served: list[str] = []
        self.retired: list[str] = []
        self.refused: list[tuple[int, str]] = []

    def on_served(self, model: LoadedModel) -> None:
        self.served.append(model.version)

    def on_retired(self, model: LoadedModel) -> None:
        self.retired.append(model.version)

    def on_refused(self, version: int, reason: str) -> None:
        self.refused.append((version, reason))


def run(settings: Settings, body: Callable[[Service, Events], Any]) -> None:
    async def main() -> None:
        events = Events()
        service = Service(settings, events=events)
        await service.start()
        try:
            await body(service, events)
        finally:
            await service.stop()

    asyncio.run(main())


def publish(root: Path, version: int, seed: int) -> Path:
    """The training stage's publish: write a staged copy, rename it into place."""
    staged = write_model_version(root / ".staging", "mnist", version, seed=seed)
    target = root / "mnist" / str(version)
    staged.rename(target)
    return target


def test_several_versions_each_with_its_own_batcher(repository: Path) -> None:
    settings = Settings(model_repository=repository, model_versions=2, model_poll_interval_s=0)

    async def body(service: Service, events: Events) -> None:
        assert service.versions() == ["2", "1"]
        assert events.served == ["2", "1"]
        newest_batcher, newest = service.admit()
        old_batcher, old = service.admit("1")
        assert (newest.version, old.version) == ("2", "1")
        assert newest_batcher is not old_batcher  # a batch never mixes versions
        pixels = synthetic_images(2)
        a, b = await asyncio.gather(
            newest_batcher.submit(pixels, deadline=1e12), old_batcher.submit(pixels, 1e12)
        )
        np.testing.assert_allclose(a.probabilities, newest.predict(pixels).probabilities, rtol=1e-6)
        np.testing.assert_allclose(b.probabilities, old.predict(pixels).probabilities, rtol=1e-6)
        assert not np.allclose(a.probabilities, b.probabilities)  # really two models
        with pytest.raises(UnknownVersionError):
            service.admit("3")

    run(settings, body)


def test_pinned_version_is_served_besides_the_newest(repository: Path) -> None:
    settings = Settings(model_repository=repository, model_version=1, model_poll_interval_s=0)

    async def body(service: Service, events: Events) -> None:
        assert service.versions() == ["2", "1"]
        assert service.admit()[1].version == "2"

    run(settings, body)
    only_pinned = settings.model_copy(update={"model_versions": 0})

    async def pinned_only(service: Service, events: Events) -> None:
        assert service.versions() == ["1"]

    run(only_pinned, pinned_only)


def test_a_new_version_is_swapped_in_and_the_old_one_retired(repository: Path) -> None:
    settings = Settings(
        model_repository=repository,
        model_poll_interval_s=0,
        request_timeout_ms=100,
        max_request_timeout_ms=100,
    )

    async def body(service: Service, events: Events) -> None:
        old_batcher, old = service.admit()
        assert old.version == "2"
        publish(repository, 3, seed=3)
        result = await service.versions_set.refresh()
        assert (result.loaded, result.retired) == ([3], [2])
        assert service.admit()[1].version == "3"
        # A request admitted before the swap still finishes on the version that admitted it.
        pixels = synthetic_images(1)
        answer = await old_batcher.submit(pixels, deadline=1e12)
        np.testing.assert_allclose(
            answer.probabilities, old.predict(pixels).probabilities, rtol=1e-6
        )
        # Stopped once the longest deadline (100 ms) has passed and it is idle: waited for as
        # a state (retiring also joins its thread, which a busy machine may make slow).
        await until(lambda: not old_batcher.running, what="the old batcher stopped")
        assert not old_batcher.running
        assert events.retired == ["2"]
        assert service.ready

    run(settings, body)


def corrupt_file(directory: Path) -> str:
    with (directory / "model.onnx").open("r+b") as handle:
        handle.seek(100)
        handle.write(b"\xff" * 16)
    return "sha256"


def bad_metadata(directory: Path) -> str:
    (directory / METADATA_FILE).write_text('{"name": "mnist"}')
    return "metadata.json is invalid"


def other_contract(directory: Path) -> str:
    metadata = msgspec.json.decode((directory / METADATA_FILE).read_bytes())
    metadata["outputs"][0]["shape"] = ["batch", 12]
    (directory / METADATA_FILE).write_bytes(msgspec.json.encode(metadata))
    return "IO contract"


@pytest.mark.parametrize("damage", [corrupt_file, bad_metadata, other_contract])
def test_a_bad_version_is_refused_once_and_the_served_one_keeps_serving(
    repository: Path, damage: Callable[[Path], str], caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(model_repository=repository, model_poll_interval_s=0)

    async def body(service: Service, events: Events) -> None:
        staged = write_model_version(repository / ".staging", "mnist", 3, seed=3)
        fragment = damage(staged)
        staged.rename(repository / "mnist" / "3")
        with caplog.at_level(logging.ERROR, logger="serving.versions"):
            result = await service.versions_set.refresh()
        assert list(result.refused) == [3]
        assert fragment in result.refused[3]
        (line,) = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
        assert "version 3" in line
        assert fragment in line
        assert [version for version, _ in events.refused] == [3]
        assert service.versions() == ["2"]
        assert service.ready
        again = await service.versions_set.refresh()  # unchanged files are not retried
        assert again.refused == {}
        assert len(events.refused) == 1
        index = service.versions_set.index()
        assert index[0][:2] == (3, "UNAVAILABLE")
        assert index[1] == (2, "READY", "")
        # A good copy published over it is picked up.
        shutil.rmtree(repository / "mnist" / "3")
        publish(repository, 3, seed=3)
        assert (await service.versions_set.refresh()).loaded == [3]

    run(settings, body)


def test_repository_extension_routes(
    repository: Path, app_client: AppStarter, tmp_path: Path
) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text(
        '[[keys]]\nname = "ops"\nkey = "ops-key-0123456789"\nscopes = ["admin", "read", "infer"]\n'
    )
    settings = Settings(model_repository=repository, model_poll_interval_s=0, keys_file=keys)
    with app_client(settings) as client:
        client.headers["authorization"] = "Bearer ops-key-0123456789"  # the control API's key
        index = client.post("/v2/repository/index").json()
        assert index == [
            {"name": "mnist", "version": "2", "state": "READY", "reason": ""},
            {"name": "mnist", "version": "1", "state": "UNAVAILABLE",
             "reason": "not selected by the version policy"},
        ]  # fmt: skip
        publish(repository, 3, seed=3)
        assert client.post("/v2/repository/models/mnist/load").status_code == 200
        assert client.get("/v2/models/mnist").json()["versions"] == ["3"]
        assert client.get("/v1/models").json()["models"][0]["version"] == "3"
        staged = write_model_version(repository / ".staging", "mnist", 4, seed=4)
        corrupt_file(staged)
        staged.rename(repository / "mnist" / "4")
        refused = client.post("/v2/repository/models/mnist/load")
        assert refused.status_code == 400
        assert "version 4 refused" in refused.json()["error"]
        assert client.post("/v2/repository/models/other/load").status_code == 404
        assert client.post("/v2/repository/models/mnist/unload").status_code == 200
        assert client.get("/v2/health/ready").status_code == 503
        gone = client.post("/v1/predict", json={"instances": synthetic_images(1).tolist()})
        assert gone.status_code == 404
        assert "unloaded" in gone.json()["error"]["message"]
        shutil.rmtree(repository / "mnist" / "4")
        assert client.post("/v2/repository/models/mnist/load").status_code == 200
        assert client.get("/v2/health/ready").status_code == 200
        predicted = client.post("/v1/predict", json={"instances": synthetic_images(1).tolist()})
        assert predicted.json()["model"]["version"] == "3"


def test_v1_models_and_v2_metadata_list_every_served_version(
    repository: Path, app_client: AppStarter
) -> None:
    settings = Settings(model_repository=repository, model_versions=2, model_poll_interval_s=0)
    with app_client(settings) as client:
        models = client.get("/v1/models").json()["models"]
        assert [m["version"] for m in models] == ["2", "1"]
        assert client.get("/v2/models/mnist").json()["versions"] == ["2", "1"]
        old = client.post(
            "/v2/models/mnist/versions/1/infer",
            json={"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 784],
                              "data": synthetic_images(1).ravel().tolist()}]},
        )  # fmt: skip
        assert old.json()["model_version"] == "1"
        assert (
            client.post("/v1/predict", json={"instances": synthetic_images(1).tolist()}).json()[
                "model"
            ]["version"]
            == "2"
        )


def test_batch_ids_are_unique_across_versions(repository: Path) -> None:
    """Observers key batch spans by id: two versions' batchers must never reuse one."""
    settings = Settings(model_repository=repository, model_versions=2, model_poll_interval_s=0)
    started: list[int] = []

    class Recorder(NullObserver):
        def on_batch_start(self, batch_id: int, requests: Any, rows: int) -> None:
            started.append(batch_id)

    async def main() -> None:
        service = Service(settings, observer=Recorder())
        await service.start()
        try:
            pixels = synthetic_images(1)
            batchers = [service.admit(version)[0] for version in ("2", "1")]
            for _ in range(3):
                await asyncio.gather(*(b.submit(pixels, deadline=1e12) for b in batchers))
        finally:
            await service.stop()

    asyncio.run(main())
    assert len(started) == 6
    assert len(set(started)) == 6
