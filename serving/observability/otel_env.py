"""The standard OpenTelemetry environment variables, resolved against the ``SERVING_*`` settings.

Precedence, highest first (docs/observability.md, "OpenTelemetry settings"):

1. ``OTEL_SDK_DISABLED=true`` turns tracing off, whatever else is set (the SDK's kill switch).
2. A ``SERVING_*`` setting that is set explicitly (``tracing_enabled``, ``trace_sample_ratio``,
   ``service_name``).
3. The standard variables: ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
   ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` turns tracing on; ``OTEL_TRACES_SAMPLER`` /
   ``OTEL_TRACES_SAMPLER_ARG`` give the sampling ratio; ``OTEL_SERVICE_NAME`` the service name.
4. The settings' defaults: tracing off, ratio 0.01, ``mnist-inference``.

Sampling is always parent-based here (``requests.head_sampled``: a caller's sampled flag is
followed, roots are sampled by ratio before any span exists), so the standard sampler names map
onto a root ratio: ``always_on`` 1, ``always_off`` 0, ``traceidratio`` the argument (default 1),
and the same for their ``parentbased_`` forms.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

from serving.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_SAMPLE_RATIO = 0.01
DEFAULT_SERVICE_NAME = "mnist-inference"
_FIXED_RATIOS = {"always_on": 1.0, "always_off": 0.0}


@dataclass(frozen=True, slots=True)
class TracingConfig:
    enabled: bool
    sample_ratio: float
    service_name: str


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def sampler_ratio(sampler: str | None, argument: str | None) -> float | None:
    """The root sampling ratio a standard ``OTEL_TRACES_SAMPLER`` asks for (None: not given or
    not one this service can follow, e.g. ``jaeger_remote``, which is logged)."""
    if not sampler:
        return None
    name = sampler.strip().lower().removeprefix("parentbased_")
    if name in _FIXED_RATIOS:
        return _FIXED_RATIOS[name]
    if name == "traceidratio":
        try:
            ratio = float(argument) if argument else 1.0
        except ValueError:
            logger.warning("OTEL_TRACES_SAMPLER_ARG=%r is not a number: using 1.0", argument)
            return 1.0
        return min(max(ratio, 0.0), 1.0)
    logger.warning("OTEL_TRACES_SAMPLER=%r is not supported: using the default ratio", sampler)
    return None


def resolve_tracing(settings: Settings, environ: Mapping[str, str] | None = None) -> TracingConfig:
    env = os.environ if environ is None else environ
    explicit = settings.model_fields_set
    if _true(env.get("OTEL_SDK_DISABLED")):
        enabled = False
    elif settings.tracing_enabled is not None:
        enabled = settings.tracing_enabled
    else:
        enabled = bool(
            env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        )
    ratio = settings.trace_sample_ratio
    if ratio is None:
        standard = sampler_ratio(env.get("OTEL_TRACES_SAMPLER"), env.get("OTEL_TRACES_SAMPLER_ARG"))
        ratio = DEFAULT_SAMPLE_RATIO if standard is None else standard
    service_name = settings.service_name
    if "service_name" not in explicit and env.get("OTEL_SERVICE_NAME"):
        service_name = env["OTEL_SERVICE_NAME"]
    return TracingConfig(enabled, ratio, service_name)
