"""The standard OTEL_* variables against the SERVING_* settings: who wins."""

from __future__ import annotations

import pytest

from serving.observability.otel_env import resolve_tracing, sampler_ratio
from serving.settings import Settings

ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}


@pytest.mark.parametrize(
    ("sampler", "argument", "ratio"),
    [
        ("always_on", None, 1.0),
        ("always_off", None, 0.0),
        ("traceidratio", "0.25", 0.25),
        ("traceidratio", None, 1.0),
        ("parentbased_always_on", None, 1.0),
        ("parentbased_always_off", None, 0.0),
        ("parentbased_traceidratio", "0.5", 0.5),
        ("parentbased_traceidratio", "7", 1.0),
        ("traceidratio", "lots", 1.0),
        ("jaeger_remote", None, None),
        (None, "0.5", None),
    ],
)
def test_standard_sampler_names_map_to_a_ratio(
    sampler: str | None, argument: str | None, ratio: float | None
) -> None:
    assert sampler_ratio(sampler, argument) == ratio


def test_defaults_without_any_variable() -> None:
    config = resolve_tracing(Settings(), {})
    assert (config.enabled, config.sample_ratio, config.service_name) == (
        False, 0.01, "mnist-inference",
    )  # fmt: skip


@pytest.mark.parametrize(
    "variable", ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
)
def test_an_otlp_endpoint_turns_tracing_on(variable: str) -> None:
    assert resolve_tracing(Settings(), {variable: "http://c:4318"}).enabled


def test_serving_settings_win_over_standard_variables() -> None:
    env = {
        **ENDPOINT,
        "OTEL_TRACES_SAMPLER": "always_on",
        "OTEL_SERVICE_NAME": "from-otel",
    }
    standard = resolve_tracing(Settings(), env)
    assert (standard.enabled, standard.sample_ratio, standard.service_name) == (
        True, 1.0, "from-otel",
    )  # fmt: skip
    explicit = Settings(tracing_enabled=False, trace_sample_ratio=0.5, service_name="mine")
    config = resolve_tracing(explicit, env)
    assert (config.enabled, config.sample_ratio, config.service_name) == (False, 0.5, "mine")


def test_otel_sdk_disabled_always_wins() -> None:
    env = {**ENDPOINT, "OTEL_SDK_DISABLED": "true"}
    assert not resolve_tracing(Settings(tracing_enabled=True), env).enabled
    assert resolve_tracing(Settings(tracing_enabled=True), {"OTEL_SDK_DISABLED": "false"}).enabled
