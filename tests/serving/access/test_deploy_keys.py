"""Every deploy manifest gives the service its keys file from the platform's secret store, and
the ECS entry point that writes it really does (run here)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

from serving.settings import Settings
from tests.support.server import REPO


def load_yaml(path: str) -> Any:
    return yaml.safe_load((REPO / path).read_text())


def keys_file(container: dict[str, Any]) -> Path:
    env = {e["name"]: e.get("value") for e in container["env"]}
    path = Path(env["SERVING_KEYS_FILE"])
    assert Settings(keys_file=path).keys_file == path
    return path


def mounted_secret(pod: dict[str, Any], container: dict[str, Any], path: Path) -> dict[str, Any]:
    """The secret volume whose mount holds ``path`` (mounted as a directory, never subPath)."""
    (mount,) = [m for m in container["volumeMounts"] if path.parent == Path(m["mountPath"])]
    assert "subPath" not in mount  # a subPath mount is never updated: no hot rotation
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    (item,) = volume["secret"]["items"]
    assert item["path"] == path.name
    secret: dict[str, Any] = volume["secret"]
    return secret


def test_kubernetes_mounts_the_keys_secret() -> None:
    pod = load_yaml("deploy/k8s/deployment.yaml")["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == "serve"]  # not the proxy
    secret = mounted_secret(pod, container, keys_file(container))
    assert secret["secretName"] == "mnist-keys"
    assert secret.get("optional", False) is False  # no keys file, no start: not silently open
    assert secret["defaultMode"] == 0o440
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"]


def test_kserve_mounts_the_keys_secret() -> None:
    spec = load_yaml("deploy/kserve/servingruntime.yaml")["spec"]
    (container,) = spec["containers"]
    assert mounted_secret(spec, container, keys_file(container))["secretName"] == "mnist-keys"


def test_cloud_run_mounts_the_latest_secret_manager_version() -> None:
    spec = load_yaml("deploy/cloudrun/service.yaml")["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    path = keys_file(container)
    secret = mounted_secret(spec, container, path)
    assert secret["secretName"] == "mnist-keys"
    assert secret["items"] == [{"key": "latest", "path": path.name}]
    env = {e["name"]: e["value"] for e in container["env"]}
    # Each read of a Secret Manager volume is an API call: not every 2 s per worker.
    assert float(env["SERVING_KEYS_RELOAD_INTERVAL_S"]) >= 30


def ecs_container() -> dict[str, Any]:
    task = json.loads((REPO / "deploy/ecs/task-definition.json").read_text())
    (container,) = task["containerDefinitions"]
    return dict(container)


def test_ecs_takes_the_keys_from_secrets_manager_and_runs_the_images_entrypoint() -> None:
    container = ecs_container()
    (secret,) = container["secrets"]
    assert secret["name"] == "MNIST_KEYS_TOML"
    assert ":secretsmanager:" in secret["valueFrom"]
    env = {e["name"]: e["value"] for e in container["environment"]}
    path = Path(env["SERVING_KEYS_FILE"])
    # Written on the task's writable /tmp volume (the root filesystem is read-only).
    assert container["readonlyRootFilesystem"] is True
    assert any(path.is_relative_to(m["containerPath"]) for m in container["mountPoints"])
    # After writing the file it execs what the image's ENTRYPOINT runs.
    image_entrypoint = next(
        line for line in (REPO / "Dockerfile.serve").read_text().splitlines()
        if line.startswith("ENTRYPOINT")
    )  # fmt: skip
    serve = json.loads(image_entrypoint.removeprefix("ENTRYPOINT").strip())
    assert container["entryPoint"][3:] == serve


def test_the_ecs_entry_point_writes_the_file_and_hides_the_secret(tmp_path: Path) -> None:
    """Run the entry point's script with a stand-in for ``python -m serving`` that reports what
    the service would see."""
    python, flag, script = ecs_container()["entryPoint"][:3]
    assert (python, flag) == ("python", "-c")
    keys = tmp_path / "keys" / "keys.toml"
    secret = '[[keys]]\nname = "ops"\nsha256 = "' + "ab" * 32 + '"\nscopes = ["admin"]\n'
    report = "import os; print(sorted(k for k in os.environ if 'KEYS' in k))"
    result = subprocess.run(
        [sys.executable, "-c", script, sys.executable, "-c", report],
        env={**os.environ, "SERVING_KEYS_FILE": str(keys), "MNIST_KEYS_TOML": secret},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert keys.read_text() == secret
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    # The service's process no longer has the secret in its environment.
    assert result.stdout.strip() == "['SERVING_KEYS_FILE']"
