"""Network bytes of the instance: the kernel's counters, lo left out, bounded interfaces."""

from __future__ import annotations

from collections import namedtuple
from pathlib import Path

import psutil
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from serving.observability import network
from serving.observability.metrics import MULTIPROC_ENV, ServingMetrics, render

Counters = namedtuple("Counters", "bytes_recv bytes_sent")


def proc_net_dev() -> dict[str, tuple[int, int]]:
    """``/proc/net/dev`` read independently of psutil: {interface: (received, sent)}."""
    rows = Path("/proc/net/dev").read_text().splitlines()[2:]
    found = {}
    for row in rows:
        name, _, fields = row.partition(":")
        values = fields.split()
        found[name.strip()] = (int(values[0]), int(values[8]))
    return found


def exported(text: str) -> dict[tuple[str, str], float]:
    return {
        (sample.name, sample.labels["interface"]): sample.value
        for family in text_string_to_metric_families(text)
        if family.name.startswith("inference_network_")
        for sample in family.samples
    }


def test_the_collector_reports_the_kernels_counters_without_loopback() -> None:
    before = proc_net_dev()
    values = exported(render(_registry()).decode())
    after = proc_net_dev()
    interfaces = {name for _, name in values}
    expected = set(before) - {"lo"} if len(before) > 1 else set(before)
    if len(expected) <= network.MAX_INTERFACES:
        assert interfaces == expected
    else:
        assert len(interfaces) == network.MAX_INTERFACES
    for name in interfaces:
        received = values[("inference_network_receive_bytes_total", name)]
        sent = values[("inference_network_transmit_bytes_total", name)]
        assert before[name][0] <= received <= after[name][0]
        assert before[name][1] <= sent <= after[name][1]


def test_loopback_is_reported_when_it_is_the_only_interface(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(psutil, "net_io_counters", lambda pernic: {"lo": Counters(100, 200)})
    assert network.counters() == {"lo": (100, 200)}
    monkeypatch.setattr(
        psutil,
        "net_io_counters",
        lambda pernic: {"lo": Counters(100, 200), "eth0": Counters(5, 6)},
    )
    assert network.counters() == {"eth0": (5, 6)}


def test_many_interfaces_are_bounded_to_the_busiest(monkeypatch: pytest.MonkeyPatch) -> None:
    many = {f"veth{i}": Counters(i, i) for i in range(40)}
    monkeypatch.setattr(psutil, "net_io_counters", lambda pernic: many)
    reported = network.counters()
    assert len(reported) == network.MAX_INTERFACES
    assert set(reported) == {f"veth{i}" for i in range(32, 40)}


def test_multiprocess_scrapes_count_the_namespace_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With several workers the family appears once, from the scraping process, not summed per
    worker."""
    monkeypatch.setattr(
        psutil, "net_io_counters", lambda pernic: {"lo": Counters(1, 2), "eth0": Counters(7, 9)}
    )
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    ServingMetrics(CollectorRegistry(), [str(i) for i in range(10)])  # a worker's metrics
    ServingMetrics(CollectorRegistry(), [str(i) for i in range(10)])  # and another's
    values = exported(render(CollectorRegistry()).decode())
    assert values == {
        ("inference_network_receive_bytes_total", "eth0"): 7,
        ("inference_network_transmit_bytes_total", "eth0"): 9,
    }


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    ServingMetrics(registry, [str(i) for i in range(10)])
    return registry
