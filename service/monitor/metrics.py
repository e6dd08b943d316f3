"""Prometheus figures of one instance (`GET /metrics`).

Counters that would be bumped once per client per change (deliveries) are kept as plain
integers by the hub and read when scraped, so the fan-out path takes no lock per socket.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from service.live import InventoryFeed, LiveHub

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Observed(Protocol):
    """The running parts of an instance that its figures are read from."""

    hub: LiveHub
    feed: InventoryFeed
    draining: bool
    inflight: int

    @property
    def redis_primary(self) -> str: ...


class Metrics:
    """One registry per process (a fresh one per app in tests, so nothing collides)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.cart_operations = Counter(
            "bb_cart_operations", "POST /cart outcomes", ["action", "result"],
            registry=self.registry)
        self.search_lookups = Counter(
            "bb_search_lookups", "Tweet-rate lookups by where the answer came from",
            ["cache"], registry=self.registry)
        self.upstream_seconds = Histogram(
            "bb_upstream_request_seconds", "Upstream search API requests", ["outcome"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=self.registry)

    def observe_upstream(self, outcome: str, seconds: float) -> None:
        """Record one upstream fetch: "ok" or the error's code, and how long it took."""
        self.upstream_seconds.labels(outcome).observe(seconds)

    def watch(self, instance: Observed) -> None:
        """Add the figures read from the running instance at scrape time."""
        self.registry.register(_LiveCollector(instance))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _LiveCollector:
    def __init__(self, instance: Observed):
        self.instance = instance

    def describe(self) -> list[Metric]:
        return []  # collected on demand; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        instance = self.instance
        connections = GaugeMetricFamily("bb_open_connections",
                                        "Clients waiting on this instance", labels=["transport"])
        for transport, count in instance.hub.counts().items():
            connections.add_metric([transport], count)
        yield connections
        deliveries = CounterMetricFamily("bb_deliveries", "Snapshots handed to clients",
                                         labels=["transport"])
        for transport, count in instance.hub.deliveries.items():
            deliveries.add_metric([transport], count)
        yield deliveries
        yield CounterMetricFamily("bb_subscription_resyncs",
                                  "Redis subscriptions made (the first, then every reconnect)",
                                  value=instance.feed.resyncs)
        yield GaugeMetricFamily("bb_draining", "1 while the instance drains for shutdown",
                                value=int(instance.draining))
        yield GaugeMetricFamily("bb_requests_in_flight", "HTTP requests being handled",
                                value=instance.inflight)
        primary = GaugeMetricFamily("bb_redis_primary", "The Redis primary this instance "
                                    "writes to, as last asked (1 for its address)",
                                    labels=["address"])
        if instance.redis_primary:
            primary.add_metric([instance.redis_primary], 1)
        yield primary
