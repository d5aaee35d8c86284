"""Hot rotation on a real service with two workers, under load: keys are added, re-scoped and
removed by editing the file, each change reaches every worker, an invalid file changes nothing,
and the clients whose key stays never see a failed request."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerStarter
from tests.support.metrics import scrape
from tests.support.tiny_model import synthetic_images

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STEADY, OPS, OLD, NEW = "steady-key-000111", "ops-key-000222", "old-key-000333", "new-key-000444"
BODY = (synthetic_images(1, seed=9) * 255).astype("uint8").tobytes()


def write_keys(path: Path, entries: dict[str, tuple[str, list[str]]]) -> None:
    """Atomically, as Kubernetes and ``mv`` do: a new file renamed over the old one."""
    text = "".join(
        f'[[keys]]\nname = "{name}"\nkey = "{key}"\nscopes = {scopes!r}\n'.replace("'", '"')
        for name, (key, scopes) in entries.items()
    )
    staged = path.with_suffix(".new")
    staged.write_text(text)
    staged.replace(path)


def fresh(url: str, method: str, path: str, key: str) -> int:
    """One request on a new connection: the kernel may hand it to either worker."""
    headers = {"authorization": f"Bearer {key}", "connection": "close"}
    if method == "POST":
        headers["content-type"] = "application/octet-stream"
    with httpx.Client(timeout=30) as client:
        return client.request(method, url + path, headers=headers, content=BODY).status_code


def everywhere(url: str, method: str, path: str, key: str, status: int) -> None:
    """Wait until 20 requests in a row, on new connections (so on both workers), get
    ``status``; the timeout only guards against a hang."""
    deadline = time.monotonic() + 60
    streak = 0
    while streak < 20:
        assert time.monotonic() < deadline, f"{method} {path} never settled on {status}"
        streak = streak + 1 if fresh(url, method, path, key) == status else 0


def test_keys_rotate_in_every_worker_under_load_with_no_failed_request(
    tmp_path: Path, tiny_model_repository: Path, serving_server: ServerStarter
) -> None:
    keys = tmp_path / "keys.toml"
    entries = {
        "steady": (STEADY, ["infer"]),
        "ops": (OPS, ["read"]),
        "old": (OLD, ["infer"]),
    }
    write_keys(keys, entries)
    env = {
        "SERVING_MODEL_REPOSITORY": str(tiny_model_repository),
        "SERVING_WORKERS": "2",
        "SERVING_KEYS_FILE": str(keys),
        "SERVING_REQUIRE_KEYS": "true",
        "SERVING_KEYS_RELOAD_INTERVAL_S": "0.2",
    }
    statuses: Counter[int] = Counter()
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                response = client.post(
                    url + "/v1/predict",
                    content=BODY,
                    headers={
                        "authorization": f"Bearer {STEADY}",
                        "content-type": "application/octet-stream",
                    },
                )
                statuses[response.status_code] += 1

    with serving_server(env, ready_timeout_s=60) as server:
        url = server.base_url
        clients = [threading.Thread(target=load) for _ in range(4)]
        for client in clients:
            client.start()
        try:
            # Added: the new key reads.
            write_keys(keys, {**entries, "new": (NEW, ["read"])})
            everywhere(url, "GET", "/v1/models", NEW, 200)
            # Re-scoped: read taken away, infer given.
            write_keys(keys, {**entries, "new": (NEW, ["infer"])})
            everywhere(url, "GET", "/v1/models", NEW, 403)
            everywhere(url, "POST", "/v1/predict", NEW, 200)
            # Removed: the old key is unknown everywhere.
            del entries["old"]
            write_keys(keys, {**entries, "new": (NEW, ["infer"])})
            everywhere(url, "POST", "/v1/predict", OLD, 401)
            # An invalid file: refused as a whole, counted; the keys in force stay.
            keys.write_text("[[keys]]\nname = broken\n")
            deadline = time.monotonic() + 60
            while refused_reloads(url) < 2:  # both workers refused it
                assert time.monotonic() < deadline, "the invalid file was never refused"
                time.sleep(0.05)
            everywhere(url, "POST", "/v1/predict", NEW, 200)
            everywhere(url, "POST", "/v1/predict", OLD, 401)
        finally:
            stop.set()
            for client in clients:
                client.join(timeout=30)
    assert statuses[200] > 50, statuses
    assert set(statuses) == {200}, statuses  # the steady key never failed a request


def refused_reloads(url: str) -> float:
    """Keys-file reloads refused, summed over the workers (read with the ops key)."""
    samples = scrape(url, headers={"authorization": f"Bearer {OPS}"})
    return sum(
        v for (name, _), v in samples.items() if name == "inference_keys_reloads_refused_total"
    )
