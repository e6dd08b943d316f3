"""The process's Redis subscription to every book's change channel, feeding the local hub."""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from service import redis_keys
from service.inventory import InventoryStore, Promotions, Snapshot
from service.live.hub import LiveHub
from service.loops import Backoff, raise_if_cancelling

log = logging.getLogger(__name__)

# Sentinel mode: how often the subscription checks that its primary is still the primary
PRIMARY_CHECK_S = 2.0
# channels per SSUBSCRIBE command (a catalog of thousands is subscribed in a few commands)
SUBSCRIBE_BATCH = 1000


class InventoryFeed:
    """The process's subscription, resynchronised after every (re)subscribe.

    Each book has its own shard channel under its hash tag (redis_keys.changes_channel),
    and the process subscribes to all of them over one connection: no task or
    connection per book, and on a Redis Cluster a book's change stays on its shard.

    Pub/sub is at-most-once: messages published while the subscription was down are
    gone. So every (re)subscribe is followed by a re-read of all snapshots, which the
    hub pushes to clients only where they are newer than what it already had.
    """

    def __init__(self, pubsub_redis: aioredis.Redis, store: InventoryStore, hub: LiveHub,
                 promotions: bool = False):
        # pubsub_redis must be a client without automatic retries: redis-py would
        # otherwise reconnect and resubscribe silently, skipping our resync.
        self.redis = pubsub_redis
        self.store = store
        self.hub = hub
        # replicated Redis (Sentinel): a resync may follow a failover, after which every
        # book needs a new epoch (service/inventory/replication.py)
        self.promotions = Promotions(store.redis) if promotions else None
        self.subscribed = asyncio.Event()
        self.resyncs = 0

    async def run(self) -> None:
        """Subscribe, resync, relay messages; on any Redis failure back off and repeat."""
        # capped at 1 s: after a failover the promoted primary is reached within a second
        # of Sentinel naming it
        backoff = Backoff(base_s=0.1, cap_s=1.0)
        while True:
            try:
                await self._subscribe_and_relay(backoff)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                raise_if_cancelling()
                delay = backoff.next_delay_s()
                log.warning("inventory subscription lost (%s: %s); retrying in %.2fs",
                            type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)

    async def _check_primary(self) -> None:
        """A planned failover demotes the old primary without closing its subscribers
        (they go on hearing what the new one publishes), so no resync would follow: ask
        which primary there is now, and resubscribe (and renew epochs) when it changed."""
        assert self.promotions is not None
        if await self.promotions.primary_id() != self.promotions.renewed_for:
            raise RedisConnectionError("the Redis primary changed; resubscribing")

    async def _subscribe_and_relay(self, backoff: Backoff) -> None:
        pubsub = self.redis.pubsub()
        try:
            channels = [redis_keys.changes_channel(sku) for sku in self.store.catalog.skus]
            for start in range(0, len(channels), SUBSCRIBE_BATCH):
                await pubsub.ssubscribe(*channels[start:start + SUBSCRIBE_BATCH])
            created = await self.store.seed()
            if created:
                log.info("initialised %d SKU(s) in Redis", created)
            if self.promotions is not None:
                renewed = await self.promotions.renew_epochs(self.store.catalog.skus)
                if renewed:
                    log.info("a new primary: %d book(s) got a new epoch", renewed)
            for snapshot in await self.store.snapshots(self.store.catalog.skus):
                self.hub.apply(snapshot)
            self.resyncs += 1
            self.subscribed.set()
            backoff.reset()
            log.info("subscribed to the change channels of %d book(s) and resynchronised",
                     len(channels))
            loop = asyncio.get_running_loop()
            next_check = loop.time() + PRIMARY_CHECK_S
            while True:
                raise_if_cancelling()
                if self.promotions is not None and loop.time() >= next_check:
                    await self._check_primary()
                    next_check = loop.time() + PRIMARY_CHECK_S
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is None or message.get("type") != "smessage":
                    continue
                try:
                    self.hub.apply(Snapshot.from_message(message["data"]))
                except ValueError as exc:
                    log.warning("ignored a malformed inventory message: %s", exc)
        finally:
            self.subscribed.clear()
            try:
                await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
            except (RedisError, OSError):
                pass
