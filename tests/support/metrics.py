"""Reading a running server's /metrics from a test, and waiting for a state it shows."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(base_url: str, headers: dict[str, str] | None = None) -> Samples:
    """Every sample of ``/metrics``, keyed by name and sorted labels (a fresh connection;
    ``headers``: e.g. an API key when reads need one)."""
    with httpx.Client(timeout=10) as client:
        response = client.get(
            f"{base_url}/metrics", headers={"connection": "close", **(headers or {})}
        )
        response.raise_for_status()
        text = response.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def wait_for(base_url: str, condition: Callable[[Samples], bool], timeout_s: float = 30) -> Samples:
    """Scrape until ``condition`` holds; the samples that satisfied it. ``timeout_s`` only guards
    against a hang: the state is waited for, never assumed after a sleep."""
    deadline = time.monotonic() + timeout_s
    while True:
        samples = scrape(base_url)
        if condition(samples):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"condition never held within {timeout_s} s: {samples}")
        time.sleep(0.02)


def queued_rows(samples: Samples) -> float:
    return samples.get(("inference_queue_depth_rows", ()), 0.0)
