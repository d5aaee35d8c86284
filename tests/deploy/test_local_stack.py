"""The local stack cannot run here (no container engine): check its files' structure instead."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
BIN = Path(sys.executable).parent
SECTIONS = {"receivers", "processors", "exporters"}


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def undefined_references(config: dict[str, Any]) -> list[str]:
    """Every component a pipeline or the service names must be defined in its section."""
    problems = []
    defined = {s: set((config.get(s) or {}).keys()) for s in [*SECTIONS, "extensions"]}
    connectors = set((config.get("connectors") or {}).keys())
    for name, pipeline in config["service"]["pipelines"].items():
        for section in SECTIONS:
            allowed = defined[section] | (connectors if section != "processors" else set())
            problems += [
                f"pipeline {name}: {section[:-1]} {c!r} is not defined"
                for c in pipeline.get(section, [])
                if c not in allowed
            ]
    problems += [
        f"service extension {e!r} is not defined"
        for e in config["service"].get("extensions", [])
        if e not in defined["extensions"]
    ]
    return problems


def test_collector_pipelines_reference_defined_components() -> None:
    config = load(DEPLOY / "otel-collector.yaml")
    assert undefined_references(config) == []
    assert "otlp" in config["service"]["pipelines"]["traces"]["receivers"]


def test_reference_check_catches_a_typo() -> None:
    config = load(DEPLOY / "otel-collector.yaml")
    config["service"]["pipelines"]["traces"]["exporters"].append("otlp/jaegre")
    assert undefined_references(config) == [
        "pipeline traces: exporter 'otlp/jaegre' is not defined"
    ]


def test_collector_config_matches_its_schema() -> None:
    subprocess.run(
        [
            str(BIN / "check-jsonschema"),
            "--schemafile",
            str(DEPLOY / "schemas" / "otel-collector.schema.json"),
            str(DEPLOY / "otel-collector.yaml"),
        ],
        check=True,
        capture_output=True,
    )


def test_compose_file_is_valid_and_its_mounts_exist() -> None:
    compose = DEPLOY / "compose.yaml"
    subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(compose)],
        check=True,
        capture_output=True,
    )
    services = load(compose)["services"]
    assert {"inference", "otel-collector", "jaeger", "prometheus", "grafana"} <= set(services)
    for name, service in services.items():
        assert ":" in service.get("image", "x:pinned"), name
        assert not service.get("image", "").endswith(":latest"), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), f"{name}: {source} missing"
    inference = services["inference"]
    assert inference["build"]["dockerfile"] == "Dockerfile.serve"
    endpoint = inference["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert endpoint == "http://otel-collector:4318"
    targets = load(DEPLOY / "prometheus.yml")["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == [f"inference:{inference['environment']['SERVING_PORT']}"]


def test_dashboard_queries_use_metrics_that_exist(metric_names: set[str]) -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "mnist-inference.json").read_text())
    expressions = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {name for expr in expressions for name in re.findall(r"\binference_[a-z0-9_]+", expr)}
    assert used
    assert used <= metric_names, used - metric_names
