"""/metrics in the Prometheus text format.

Two parts: the process's own registry (or, when `PROMETHEUS_MULTIPROC_DIR` is set, every granian
worker's metrics merged by `prometheus_client.multiprocess`), and operational gauges computed at
scrape time from PostgreSQL and Redis (the same answer whichever worker is scraped):
`marketplace_usage_flush_lag_seconds`, `marketplace_webhook_queue_depth`,
`marketplace_webhook_failed_attempts_last_hour`.

Multi-process: set `PROMETHEUS_MULTIPROC_DIR` to an empty, writable directory before the server
starts (wipe it on every start); prometheus_client then keeps each worker's samples in files there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

HELP = {
    "usage_flush_lag_seconds": "Age of the oldest usage entry not yet flushed from Redis to PostgreSQL",
    "webhook_queue_depth": "Webhook deliveries waiting to be sent or retried",
    "webhook_failed_attempts_last_hour": "Failed webhook delivery attempts in the last hour",
}


def process_metrics() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


class _ScrapeValues(Collector):
    """Values computed for this scrape only. Metric families, not `Gauge` objects: in multi-process
    mode a `Gauge` would write a sample file per scrape into PROMETHEUS_MULTIPROC_DIR."""

    def __init__(self, values: dict[str, float]) -> None:
        self.values = values

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, value in self.values.items():
            yield GaugeMetricFamily(f"marketplace_{name}", HELP[name], value=value)


def gauges_text(values: dict[str, float]) -> bytes:
    registry = CollectorRegistry()
    registry.register(_ScrapeValues(values))
    return generate_latest(registry)
