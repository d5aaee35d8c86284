"""The monitor's arithmetic (serving/static/metrics.js), run in Chromium.

The parser must read the service's real exposition exactly as prometheus_client's own parser
does; quantiles must land where the observed values' quantiles are; the summary of two real
scrapes must give the request rate and mean batch size of the traffic sent between them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.browser import OfflinePage, offline_page
from tests.support.server import RunningServer
from tests.support.tiny_model import synthetic_images

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BOUNDS = (0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)


@pytest.fixture(scope="module")
def page(browser: Browser, page_server: RunningServer) -> Iterator[OfflinePage]:
    with offline_page(browser, page_server.base_url) as opened:
        opened.page.goto(opened.url("/"))
        yield opened


def metrics_js(page: OfflinePage, body: str, arg: Any) -> Any:
    """Evaluate ``body`` (a JS function of the metrics.js module and ``arg``) in the page."""
    return page.page.evaluate(
        f"""async (arg) => {{
            const m = await import("/static/metrics.js");
            return ({body})(m, arg);
        }}""",
        arg,
    )


def as_python(value: float | str | None) -> float:
    """Playwright returns Infinity/NaN as such; JSON would not carry them."""
    return float("nan") if value is None else float(value)


def sample_set(samples: list[tuple[str, dict[str, str], float]]) -> set[tuple[Any, ...]]:
    return {
        (name, tuple(sorted(labels.items())), "nan" if math.isnan(value) else value)
        for name, labels, value in samples
    }


def test_parses_the_service_exposition_like_prometheus_client(
    page: OfflinePage, page_server: RunningServer
) -> None:
    pixels = synthetic_images(2, seed=3)
    httpx.post(f"{page_server.base_url}/v1/predict", json={"instances": pixels.tolist()})
    text = httpx.get(f"{page_server.base_url}/metrics").text
    tricky = 'odd_total{path="a\\"b\\\\c\\nd",x="1"} +Inf\nodd_gauge NaN\n'
    for exposition in (text, tricky):
        parsed = metrics_js(
            page,
            "(m, text) => m.parsePrometheus(text).map((s) => [s.name, s.labels, s.value])",
            exposition,
        )
        ours = sample_set([(n, labels, as_python(v)) for n, labels, v in parsed])
        reference = sample_set(
            [
                (s.name, s.labels, s.value)
                for family in text_string_to_metric_families(exposition)
                for s in family.samples
            ]
        )
        assert ours == reference
        assert len(ours) > (50 if exposition is text else 1)


@pytest.mark.parametrize("seed", [1, 2])
def test_quantiles_land_in_the_bucket_of_the_observed_quantile(
    page: OfflinePage, seed: int
) -> None:
    registry = CollectorRegistry()
    latency = Histogram("latency_seconds", "test", buckets=BOUNDS, registry=registry)
    values = np.random.default_rng(seed).lognormal(np.log(0.003), 0.8, 5000)
    for value in values:
        latency.observe(float(value))
    quantiles = (0.5, 0.9, 0.95, 0.99)
    estimates = metrics_js(
        page,
        """(m, [text, quantiles]) => {
            const h = m.histogram(m.parsePrometheus(text), "latency_seconds");
            return quantiles.map((q) => m.histogramQuantile(q, h.buckets));
        }""",
        [generate_latest(registry).decode(), list(quantiles)],
    )
    edges = (0.0, *BOUNDS, math.inf)
    for q, estimate in zip(quantiles, estimates, strict=True):
        true = float(np.quantile(values, q))
        bucket = next(i for i in range(1, len(edges)) if true <= edges[i])
        assert edges[bucket - 1] <= estimate <= edges[bucket], (q, true, estimate)


def test_quantiles_interpolate_inside_a_bucket(page: OfflinePage) -> None:
    """Values spread evenly inside each bucket: linear interpolation finds the quantile."""
    registry = CollectorRegistry()
    bounds = tuple(round(0.01 * i, 2) for i in range(1, 11))
    latency = Histogram("latency_seconds", "test", buckets=bounds, registry=registry)
    values = np.linspace(0.0, 0.1, 10_001)[1:]
    for value in values:
        latency.observe(float(value))
    estimates = metrics_js(
        page,
        """(m, text) => {
            const h = m.histogram(m.parsePrometheus(text), "latency_seconds");
            return [0.05, 0.5, 0.95, 1.0].map((q) => m.histogramQuantile(q, h.buckets));
        }""",
        generate_latest(registry).decode(),
    )
    assert estimates == pytest.approx([0.005, 0.05, 0.095, 0.1], abs=2e-5)


def test_summary_of_two_scrapes_gives_the_traffic_between_them(
    page: OfflinePage, page_server: RunningServer
) -> None:
    base = page_server.base_url
    before = httpx.get(f"{base}/metrics").text
    requests, rows = 12, 3
    with httpx.Client(base_url=base) as client:
        for seed in range(requests):  # one at a time: each request is a batch of its own
            pixels = synthetic_images(rows, seed=seed)
            assert client.post("/v1/predict", json={"instances": pixels.tolist()}).is_success
        client.get("/healthz")  # another route: not counted as predictions
    after = httpx.get(f"{base}/metrics").text
    summary = metrics_js(
        page,
        """(m, [after, before]) => ({
            now: m.summarise(m.parsePrometheus(after), m.parsePrometheus(before), 4),
            reset: m.summarise(m.parsePrometheus(before), m.parsePrometheus(after), 4),
            first: m.summarise(m.parsePrometheus(after), null, 0),
        })""",
        [after, before],
    )
    now = summary["now"]
    assert now["requestsPerSecond"] == pytest.approx(requests / 4)
    assert now["meanBatchSize"] == pytest.approx(rows)
    assert 0 < now["p50Seconds"] <= now["p95Seconds"] < 1.0
    assert now["model"]["name"] == "mnist"
    assert now["model"]["version"] == "1"
    assert now["driftPsi"] >= 0
    assert now["driftImages"] > 0
    # A counter that went down means a restart: the newer scrape counts from zero.
    counted_before = sum(
        s.value
        for family in text_string_to_metric_families(before)
        for s in family.samples
        if s.name == "inference_http_requests_total" and s.labels["route"] == "/v1/predict"
    )
    assert summary["reset"]["requestsPerSecond"] == pytest.approx(counted_before / 4)
    first = summary["first"]
    assert first["requestsPerSecond"] is None
    assert first["p50Seconds"] is None
    assert page.problems() == []
