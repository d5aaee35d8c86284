"""Deploy manifests agree with the service: its port, its health routes, its drain time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

from serving.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def load_yaml(path: str) -> Any:
    return yaml.safe_load((REPO / path).read_text())


def test_kubernetes_probes_port_and_grace_period_match_the_service() -> None:
    pod = load_yaml("deploy/k8s/deployment.yaml")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["ports"][0]["containerPort"] == Settings().port
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"]: e["value"] for e in container["env"]}
    drain = float(env["SERVING_DRAIN_TIMEOUT_S"])
    grace = float(env["SERVING_DRAIN_GRACE_S"])
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    # SIGTERM comes after preStop; the drain window then the queued work must fit before SIGKILL.
    assert pod["terminationGracePeriodSeconds"] > pre_stop + grace + drain
    assert grace >= 1  # endpoint removal is not instant: keep answering (503) for a while
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"mountPath": "/tmp", "name": "tmp"} in container["volumeMounts"]


def test_cloud_run_probes_and_port_match_the_service() -> None:
    (container,) = load_yaml("deploy/cloudrun/service.yaml")["spec"]["template"]["spec"][
        "containers"
    ]
    assert container["ports"][0]["containerPort"] == Settings().port
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_ecs_stop_timeout_outlasts_the_drain_and_health_check_uses_readyz() -> None:
    task = json.loads((REPO / "deploy/ecs/task-definition.json").read_text())
    (container,) = task["containerDefinitions"]
    env = {e["name"]: e["value"] for e in container["environment"]}
    grace = float(env.get("SERVING_DRAIN_GRACE_S", Settings().drain_grace_s))
    assert container["stopTimeout"] > grace + float(env["SERVING_DRAIN_TIMEOUT_S"])
    assert "/readyz" in " ".join(container["healthCheck"]["command"])
    assert container["portMappings"][0]["containerPort"] == Settings().port
