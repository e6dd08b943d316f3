"""The process's Redis subscription to every book's change channel, feeding the local hub."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from service import redis_keys
from service.inventory import InventoryStore, Promotions, Snapshot
from service.inventory.snapshot import as_text
from service.live.hub import LiveHub
from service.loops import Backoff, raise_if_cancelling
from service.redis_nodes import RedisNodes

log = logging.getLogger(__name__)

# replicated modes: how often the subscription checks that its primaries are still those
PRIMARY_CHECK_S = 2.0


class InventoryFeed:
    """The process's subscriptions, resynchronised after every (re)subscribe.

    Each book has its own shard channel under its hash tag (redis_keys.changes_channel),
    and the process subscribes to all of them over one connection per node: no task or
    connection per book, and on a Redis Cluster a book's change stays on its shard.
    Per-book channels grouped per node (rather than a fixed number of partition channels)
    because a book's keys already carry its own tag: its channel lives where its script
    runs, so a script can SPUBLISH it, and no key needs a second, partition tag.

    Pub/sub is at-most-once: messages published while a subscription was down are gone.
    So every (re)subscribe is followed by a re-read of all snapshots, which the hub
    pushes to clients only where they are newer than what it already had. On a cluster
    the subscriptions are rebuilt from the current slot map when a node's connection
    fails or a node tells us a slot left it (an unsolicited `sunsubscribe`, Redis 7's
    notice of a slot migration or a demotion).
    """

    def __init__(self, nodes: RedisNodes, store: InventoryStore, hub: LiveHub,
                 promotions: bool = False):
        # the nodes' pub/sub clients do not retry by themselves: redis-py would otherwise
        # reconnect and resubscribe silently, skipping our resync
        self.nodes = nodes
        self.store = store
        self.hub = hub
        # replicated Redis (Sentinel, Cluster): a resync may follow a failover, after
        # which the books of that primary need a new epoch (inventory/replication.py)
        self.promotions = Promotions(nodes) if promotions else None
        self.subscribed = asyncio.Event()
        self.resyncs = 0

    async def run(self) -> None:
        """Subscribe, resync, relay messages; on any Redis failure back off and repeat."""
        # capped at 1 s: after a failover the promoted primary is reached within a second
        # of Sentinel (or the cluster) naming it
        backoff = Backoff(base_s=0.1, cap_s=1.0)
        while True:
            try:
                await self._subscribe_and_relay(backoff)
            except (RedisError, OSError) as exc:
                raise_if_cancelling()
                delay = backoff.next_delay_s()
                log.warning("inventory subscription lost (%s: %s); retrying in %.2fs",
                            type(exc).__name__, exc, delay)
            except (Exception, asyncio.CancelledError):
                # A feed that ends freezes every watcher of this instance for good, so
                # anything unexpected is logged and retried too; only a cancellation of
                # this task (the instance stopping) ends it. (A CancelledError while the
                # task is not being cancelled comes from a library's own timeout handling.)
                raise_if_cancelling()
                delay = backoff.next_delay_s()
                log.exception("inventory subscription failed unexpectedly; retrying in %.2fs",
                              delay)
            await self.nodes.refresh()
            await asyncio.sleep(delay)

    async def _check_primaries(self) -> None:
        """A planned failover demotes the old primary without closing its subscribers
        (they go on hearing what the new one publishes), so no resync would follow: ask
        which primaries there are now, and resubscribe (and renew epochs) when they
        changed."""
        assert self.promotions is not None
        renewed = self.promotions.renewed_for
        if await self.promotions.primary_ids(list(renewed)) != renewed:
            raise RedisConnectionError("a Redis primary changed; resubscribing")

    async def _subscribe_and_relay(self, backoff: Backoff) -> None:
        channels = [redis_keys.changes_channel(sku) for sku in self.store.catalog.skus]
        pubsubs = []
        try:
            for name, positions in self.nodes.group(channels).items():
                pubsub = self.nodes.subscriber(name).pubsub()
                pubsubs.append(pubsub)
                for batch in self.nodes.subscribe_batches([channels[i] for i in positions]):
                    await pubsub.ssubscribe(*batch)
            await self._resync()
            backoff.reset()
            log.info("subscribed to the change channels of %d book(s) on %d node(s) and "
                     "resynchronised", len(channels), len(pubsubs))
            # the first node's relay also checks the primaries (inline, as it always did)
            checks = [self.promotions is not None] + [False] * (len(pubsubs) - 1)
            loops = [self._relay(pubsub, check) for pubsub, check in zip(pubsubs, checks)]
            if len(loops) == 1:
                await loops[0]
            else:
                await _until_one_fails(loops)
        finally:
            self.subscribed.clear()
            for pubsub in pubsubs:
                try:
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
                except (RedisError, OSError):
                    pass

    async def _resync(self) -> None:
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

    async def _relay(self, pubsub: PubSub, check_primaries: bool) -> None:
        """Apply one node's change messages until its connection fails or a slot leaves
        it; with check_primaries, also check every PRIMARY_CHECK_S that the primaries are
        still those the epochs were renewed for."""
        loop = asyncio.get_running_loop()
        next_check = loop.time() + PRIMARY_CHECK_S
        while True:
            raise_if_cancelling()
            if check_primaries and loop.time() >= next_check:
                await self._check_primaries()
                next_check = loop.time() + PRIMARY_CHECK_S
            message = await pubsub.get_message(timeout=1.0)
            if message is None:
                continue
            if message["type"] == "sunsubscribe":  # we never unsubscribe: a slot moved
                raise RedisConnectionError(f"{as_text(message['channel'])} left its node "
                                           "(a slot moved or the node was demoted); "
                                           "resubscribing")
            if message["type"] != "smessage":
                continue
            try:
                self.hub.apply(Snapshot.from_message(message["data"]))
            except ValueError as exc:
                log.warning("ignored a malformed inventory message: %s", exc)


async def _until_one_fails(loops: list[Coroutine[Any, Any, None]]) -> None:
    """Run the loops until one raises, then stop the others and raise that error.
    (Not a TaskGroup: on Python 3.11 it leaves its parent task marked as cancelling when a
    child fails after the body ended, and the feed would then stop for good.)"""
    tasks = [asyncio.create_task(loop) for loop in loops]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        error = task.exception()
        if error is not None:
            raise error

