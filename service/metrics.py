"""Prometheus figures of one instance (`GET /metrics`), and its heartbeat in Redis.

Counters that would be bumped once per client per change (deliveries) are kept as plain
integers by the hub and read when scraped, so the fan-out path takes no lock per socket.
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from service import keys

if TYPE_CHECKING:
    from service.app import Services

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """One registry per process (a fresh one per app in tests, so nothing collides)."""

    def __init__(self):
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

    def bind(self, services: "Services") -> None:
        """Add the figures read from the running services at scrape time."""
        self.registry.register(_LiveCollector(services))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _LiveCollector:
    def __init__(self, services: "Services"):
        self.services = services

    def describe(self):
        return []  # collected on demand; nothing to check at registration

    def collect(self):
        services = self.services
        connections = GaugeMetricFamily("bb_open_connections",
                                        "Clients waiting on this instance", labels=["transport"])
        for transport, count in services.hub.counts().items():
            connections.add_metric([transport], count)
        yield connections
        deliveries = CounterMetricFamily("bb_deliveries", "Snapshots handed to clients",
                                         labels=["transport"])
        for transport, count in services.hub.deliveries.items():
            deliveries.add_metric([transport], count)
        yield deliveries
        yield CounterMetricFamily("bb_subscription_resyncs",
                                  "Redis subscriptions made (the first, then every reconnect)",
                                  value=services.feed.resyncs)
        yield GaugeMetricFamily("bb_draining", "1 while the instance drains for shutdown",
                                value=int(services.draining))
        yield GaugeMetricFamily("bb_requests_in_flight", "HTTP requests being handled",
                                value=services.inflight)


def heartbeat(services: "Services", started_s: float) -> dict:
    """What an instance tells the cluster about itself."""
    settings = services.settings
    counts = services.hub.counts()
    return {"id": settings.instance_id, "pid": os.getpid(), "port": settings.port,
            "startedAt": started_s, "beatAt": time.time(), "draining": services.draining,
            "websockets": counts["websocket"], "longpolls": counts["longpoll"],
            "inFlight": services.inflight, "resyncs": services.feed.resyncs}


async def send_heartbeat(services: "Services", started_s: float) -> None:
    beat = heartbeat(services, started_s)
    now_ms = int(beat["beatAt"] * 1000)
    async with services.redis.pipeline(transaction=False) as pipe:
        pipe.set(keys.heartbeat_key(beat["id"]), json.dumps(beat), ex=keys.HEARTBEAT_TTL_S)
        pipe.zadd(keys.INSTANCES_KEY, {beat["id"]: now_ms})
        pipe.zremrangebyscore(keys.INSTANCES_KEY, 0, now_ms - keys.GONE_INSTANCE_MEMORY_S * 1000)
        await pipe.execute()


async def cluster_view(redis) -> list[dict]:
    """Every instance seen in the last hour: its latest heartbeat, and whether it is up."""
    members = await redis.zrange(keys.INSTANCES_KEY, 0, -1, withscores=True)
    if not members:
        return []
    ids = [member.decode() if isinstance(member, bytes) else member for member, _ in members]
    beats = await redis.mget([keys.heartbeat_key(i) for i in ids])
    now_s = time.time()
    view = []
    for (instance_id, last_ms), raw in zip(zip(ids, (score for _, score in members)), beats):
        entry = json.loads(raw) if raw else {"id": instance_id}
        entry["up"] = raw is not None and not entry.get("draining", False)
        entry["state"] = "up" if entry["up"] else ("draining" if raw else "gone")
        entry["lastBeatAgoS"] = round(now_s - last_ms / 1000, 1)
        view.append(entry)
    return sorted(view, key=lambda entry: entry["id"])
