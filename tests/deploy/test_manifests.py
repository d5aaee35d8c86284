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
    # The proxy sidecar beside it: tests/deploy/test_haproxy.py.
    (container,) = [c for c in pod["containers"] if c["name"] == "serve"]
    assert container["ports"][0]["containerPort"] == Settings().port
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"]: e.get("value") for e in container["env"]}
    drain = float(env["SERVING_DRAIN_TIMEOUT_S"])
    grace = float(env["SERVING_DRAIN_GRACE_S"])
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    # SIGTERM comes after preStop; the drain window then the queued work must fit before SIGKILL.
    assert pod["terminationGracePeriodSeconds"] > pre_stop + grace + drain
    assert grace >= 1  # endpoint removal is not instant: keep answering (503) for a while
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"mountPath": "/tmp", "name": "tmp"} in container["volumeMounts"]
    # Every replica verifies every other's prediction ids (feedback through the load balancer).
    (key,) = [e for e in container["env"] if e["name"] == "SERVING_FEEDBACK_KEY"]
    assert key["valueFrom"]["secretKeyRef"]["name"] == "mnist-feedback"


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


def test_kserve_runtime_speaks_v2_on_the_service_port_with_its_health_routes() -> None:
    runtime = load_yaml("deploy/kserve/servingruntime.yaml")
    service = load_yaml("deploy/kserve/inferenceservice.yaml")
    assert runtime["spec"]["protocolVersions"] == ["v2", "grpc-v2"]  # grpc-v2 on grpc_port
    (container,) = runtime["spec"]["containers"]
    port = container["ports"][0]["containerPort"]
    assert port == Settings().port
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": port}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": port}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert set(env) <= {f"SERVING_{name.upper()}" for name in Settings.model_fields}
    settings = Settings(**{k.removeprefix("SERVING_").lower(): v for k, v in env.items()})
    assert settings.grpc_port == 8001  # the h2c port docs/serving.md tells a grpc-v2 service
    predictor = service["spec"]["predictor"]
    model = predictor["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["protocolVersion"] == "v2"
    assert model["modelFormat"]["name"] in {
        f["name"] for f in runtime["spec"]["supportedModelFormats"]
    }
    assert model["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    # The autoscaler aims below the hard per-pod limit, so it scales before requests queue.
    assert predictor["scaleMetric"] == "concurrency"
    assert predictor["scaleTarget"] < predictor["containerConcurrency"]
    assert 1 <= predictor["minReplicas"] < predictor["maxReplicas"]
