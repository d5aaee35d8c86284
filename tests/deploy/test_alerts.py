"""The alert rules: valid for promtool, unit-tested with promtool, on metrics that exist."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: apt-get install prometheus (.ci/run installs it)")
    return path


def test_rules_are_valid() -> None:
    done = subprocess.run(
        [promtool(), "check", "rules", "alerts.yaml"], cwd=RULES, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_rules_pass_their_unit_tests() -> None:
    done = subprocess.run(
        [promtool(), "test", "rules", "alerts.test.yaml"],
        cwd=RULES,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_named_in_the_issue_exists_and_is_tested() -> None:
    rules = yaml.safe_load((RULES / "alerts.yaml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert {
        "PredictLatencySLOFastBurn", "PredictErrorRateHigh", "PredictLoadShedding",
        "InputDrift", "PredictionDrift", "LiveAccuracyDrop",
    } <= alerts  # fmt: skip
    tests = yaml.safe_load((RULES / "alerts.test.yaml").read_text())
    firing = {
        case["alertname"]
        for test in tests["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert firing == alerts


def test_rules_use_metrics_that_exist(metric_names: set[str]) -> None:
    rules = yaml.safe_load((RULES / "alerts.yaml").read_text())
    expressions = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    used = {name for expr in expressions for name in re.findall(r"\binference_[a-z0-9_]+", expr)}
    assert used
    assert used <= metric_names, used - metric_names
