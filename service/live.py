"""Live fan-out: one Redis subscription per process feeding a local hub of clients.

The hub keeps the latest snapshot of every SKU in memory. Parked long-polls and open
WebSockets wait on the hub, never on Redis, so a client costs Redis nothing. Each change
is serialised once per process (JSON payload plus a ready-made WebSocket frame) and the
same bytes go to every client.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import struct
from collections import defaultdict
from typing import Iterable, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from service import keys
from service.background import Backoff, raise_if_cancelling
from service.inventory import InventoryStore, Snapshot

log = logging.getLogger(__name__)


def websocket_text_frame(payload: bytes) -> bytes:
    """An unmasked, unfragmented RFC 6455 text frame: identical for every client."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x81, size)
    elif size <= 0xFFFF:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    return header + payload


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """A snapshot with its serialised forms, built once per change per process."""
    snapshot: Snapshot
    payload: bytes
    frame: bytes

    @classmethod
    def build(cls, snapshot: Snapshot, instance_id: str) -> "Entry":
        payload = json.dumps({**snapshot.as_dict(), "instance": instance_id},
                             separators=(",", ":")).encode()
        return cls(snapshot, payload, websocket_text_frame(payload))


class Subscriber(Protocol):
    def push(self, entry: Entry) -> None: ...


class LiveHub:
    """Latest snapshot per SKU, and the local long-polls and sockets waiting on them."""

    def __init__(self, instance_id: str):
        self.instance_id = instance_id
        self._entries: dict[str, Entry] = {}
        self._waiters: dict[str, set[asyncio.Future]] = defaultdict(set)
        self._subscribers: dict[str, set[Subscriber]] = defaultdict(set)
        # snapshots handed out, by transport (read by /metrics; counted per change, not
        # per client, so the fan-out loop stays bare)
        self.deliveries = {"websocket": 0, "longpoll": 0}

    def current(self, sku: str) -> Entry | None:
        return self._entries.get(sku)

    def apply(self, snapshot: Snapshot) -> bool:
        """Take a snapshot if it is newer than the one held, and wake its clients."""
        held = self._entries.get(snapshot.sku)
        if not snapshot.is_newer_than(held.snapshot if held else None):
            return False
        entry = Entry.build(snapshot, self.instance_id)
        self._entries[snapshot.sku] = entry
        waiters = self._waiters.pop(snapshot.sku, ())
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(entry)
        # copy: a push may close a dead socket, whose cleanup edits the set
        subscribers = list(self._subscribers.get(snapshot.sku, ()))
        for subscriber in subscribers:
            subscriber.push(entry)
        self.deliveries["longpoll"] += len(waiters)
        self.deliveries["websocket"] += len(subscribers)
        return True

    def wait(self, skus: Iterable[str]) -> asyncio.Future:
        """A future resolved by the next change of any of the SKUs; cancel it to stop."""
        future = asyncio.get_running_loop().create_future()
        skus = list(skus)
        for sku in skus:
            self._waiters[sku].add(future)

        def forget(_):
            for sku in skus:
                waiting = self._waiters.get(sku)
                if waiting is not None:
                    waiting.discard(future)
        future.add_done_callback(forget)
        return future

    def release_all(self) -> None:
        """Answer every parked long-poll now (used when draining)."""
        waiters = {w for group in self._waiters.values() for w in group}
        self._waiters.clear()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def attach(self, subscriber: Subscriber, skus: Iterable[str]) -> None:
        for sku in skus:
            self._subscribers[sku].add(subscriber)

    def detach(self, subscriber: Subscriber, skus: Iterable[str]) -> None:
        for sku in skus:
            group = self._subscribers.get(sku)
            if group is not None:
                group.discard(subscriber)

    def subscribers(self) -> set[Subscriber]:
        return {s for group in self._subscribers.values() for s in group}

    def counts(self) -> dict[str, int]:
        """How many local clients wait, by kind (for /metrics and heartbeats)."""
        return {"longpoll": len({w for g in self._waiters.values() for w in g}),
                "websocket": len(self.subscribers())}


class InventoryFeed:
    """The process's single Redis subscription, resynchronised after every (re)subscribe.

    Pub/sub is at-most-once: messages published while the subscription was down are
    gone. So every (re)subscribe is followed by a re-read of all snapshots, which the
    hub pushes to clients only where they are newer than what it already had.
    """

    def __init__(self, pubsub_redis: aioredis.Redis, store: InventoryStore, hub: LiveHub):
        # pubsub_redis must be a client without automatic retries: redis-py would
        # otherwise reconnect and resubscribe silently, skipping our resync.
        self.redis = pubsub_redis
        self.store = store
        self.hub = hub
        self.subscribed = asyncio.Event()
        self.resyncs = 0

    async def run(self) -> None:
        """Subscribe, resync, relay messages; on any Redis failure back off and repeat."""
        backoff = Backoff(base_s=0.1, cap_s=5.0)
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

    async def _subscribe_and_relay(self, backoff: Backoff) -> None:
        pubsub = self.redis.pubsub()
        try:
            await pubsub.subscribe(keys.INVENTORY_CHANNEL)
            created = await self.store.seed()
            if created:
                log.info("initialised %d SKU(s) in Redis", created)
            for snapshot in await self.store.snapshots(self.store.catalog.skus):
                self.hub.apply(snapshot)
            self.resyncs += 1
            self.subscribed.set()
            backoff.reset()
            log.info("subscribed to %s and resynchronised", keys.INVENTORY_CHANNEL)
            while True:
                raise_if_cancelling()
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                if message is None or message.get("type") != "message":
                    continue
                try:
                    self.hub.apply(Snapshot.from_message(message["data"]))
                except ValueError as exc:
                    log.warning("ignored a malformed inventory message: %s", exc)
        finally:
            self.subscribed.clear()
            try:
                await pubsub.aclose()
            except (RedisError, OSError):
                pass
