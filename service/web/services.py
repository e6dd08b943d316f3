"""The parts of one instance that every handler shares."""

from __future__ import annotations

import dataclasses

import redis.asyncio as aioredis

from service.config import Config
from service.inventory import Catalog, InventoryStore
from service.live import InventoryFeed, LiveHub
from service.monitor.metrics import Metrics
from service.redis_connect import RedisConnection
from service.search import SearchCache


@dataclasses.dataclass
class Services:
    """Everything a handler needs; one per process (`self.services` in a handler)."""
    config: Config
    catalog: Catalog
    redis: aioredis.Redis
    store: InventoryStore
    hub: LiveHub
    feed: InventoryFeed
    draining: bool = False
    inflight: int = 0
    search: SearchCache | None = None  # tweets per second; None in tests that need no search
    metrics: Metrics = dataclasses.field(default_factory=Metrics)
    # how the instance reaches Redis (mode, topology); None in tests on fakeredis
    connection: RedisConnection | None = None

    @property
    def redis_primary(self) -> str:
        """The Redis primary this instance writes to, as last asked ("" before)."""
        return self.connection.primary if self.connection is not None else ""

    def __post_init__(self) -> None:
        self.metrics.watch(self)
