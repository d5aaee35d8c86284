"""The gRPC port in the image and the Kubernetes manifests agrees with the service's setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

from serving.settings import Settings

REPO = Path(__file__).resolve().parents[2]
GRPC_PORT = Settings().grpc_port


def load_yaml(path: str) -> Any:
    return yaml.safe_load((REPO / path).read_text())


def test_the_image_exposes_http_and_grpc() -> None:
    exposed = (REPO / "Dockerfile.serve").read_text().splitlines()
    assert f"EXPOSE {Settings().port} {GRPC_PORT}" in exposed


def test_kubernetes_declares_the_grpc_port_as_cleartext_http2() -> None:
    pod = load_yaml("deploy/k8s/deployment.yaml")["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == "serve"]  # not the proxy
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"serve": Settings().port, "grpc": GRPC_PORT}
    service_ports = {
        port["name"]: port for port in load_yaml("deploy/k8s/service.yaml")["spec"]["ports"]
    }
    assert service_ports["grpc"]["targetPort"] == "grpc"
    assert service_ports["grpc"]["appProtocol"] == "kubernetes.io/h2c"
