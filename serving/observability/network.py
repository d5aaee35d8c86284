"""Network bytes of the instance, read at scrape time from the kernel's counters.

Interfaces belong to the network namespace (the container, the pod), not to a worker process, so
per-worker counters would be summed once per worker in multiprocess mode. Instead this collector
reads ``/proc/net/dev`` (through psutil) in whichever process answers the scrape and reports the
kernel's own cumulative counters, which are exact and survive worker restarts.
"""

from __future__ import annotations

from collections.abc import Iterable

import psutil
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

PREFIX = "inference_network"
LOOPBACK = "lo"
#: At most this many interfaces are reported (the busiest): bounded labels even on a host with
#: many virtual interfaces.
MAX_INTERFACES = 8


def counters() -> dict[str, tuple[int, int]]:
    """``{interface: (bytes received, bytes sent)}``, ``lo`` left out unless it is the only one."""
    found = {
        name: (stats.bytes_recv, stats.bytes_sent)
        for name, stats in psutil.net_io_counters(pernic=True).items()
    }
    if len(found) > 1:
        found.pop(LOOPBACK, None)
    busiest = sorted(found, key=lambda name: -sum(found[name]))[:MAX_INTERFACES]
    return {name: found[name] for name in sorted(busiest)}


class NetworkCollector(Collector):
    """``inference_network_{receive,transmit}_bytes_total{interface}`` at every scrape."""

    def collect(self) -> Iterable[CounterMetricFamily]:
        received = CounterMetricFamily(
            f"{PREFIX}_receive_bytes",
            "Bytes received by the instance's network interfaces (lo only when it is the only "
            "one), from the kernel's counters.",
            labels=["interface"],
        )
        sent = CounterMetricFamily(
            f"{PREFIX}_transmit_bytes",
            "Bytes sent by the instance's network interfaces (lo only when it is the only one), "
            "from the kernel's counters.",
            labels=["interface"],
        )
        for name, (rx, tx) in counters().items():
            received.add_metric([name], rx)
            sent.add_metric([name], tx)
        yield received
        yield sent
