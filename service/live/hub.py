"""The process's local hub: the latest snapshot of every SKU, and the clients waiting.

The hub keeps the latest snapshot of every SKU in memory. Parked long-polls and open
WebSockets wait on the hub, never on Redis, so a client costs Redis nothing. Each change
is serialised once per process (JSON payload plus a ready-made WebSocket frame) and the
same bytes go to every client.

Fan-out is coalesced per SKU: the held snapshot is always the newest (a new long-poll or
socket gets it at once), but the parked long-polls and open sockets of a SKU are woken at
most once per `push_interval_s`. A change arriving sooner after the last fan-out waits
for the end of the interval and goes out then, as the newest of what came meanwhile. So
one client toggling a book as fast as it can costs each socket at most 1/interval frames
a second (measured: bench/toggle.py). A change waits at most the interval plus the rest
of a fan-out round in progress (rounds are pushed in slices, see _fan_out).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import struct
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Protocol

from service.inventory import Snapshot
from service.inventory.clock import RedisClock

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


def with_server_time(payload: bytes, server_time_ms: int) -> bytes:
    """The JSON object `payload` with `serverTime` added (spliced: no re-encoding)."""
    return payload[:-1] + b',"serverTime":%d}' % server_time_ms


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """A snapshot with its serialised forms, built once per change per process.

    `payload` is the JSON without `serverTime`, which an answer adds when it is sent;
    `frame` is the WebSocket push of the change, stamped when it was built (it is sent
    at once)."""
    snapshot: Snapshot
    payload: bytes
    frame: bytes

    @classmethod
    def build(cls, snapshot: Snapshot, instance_id: str, server_time_ms: int) -> Entry:
        """Serialise a snapshot once, for every long-poll and socket of this process."""
        payload = json.dumps({**snapshot.as_dict(), "instance": instance_id},
                             separators=(",", ":")).encode()
        return cls(snapshot, payload,
                   websocket_text_frame(with_server_time(payload, server_time_ms)))

    def frame_at(self, server_time_ms: int) -> bytes:
        """A frame of this snapshot stamped now (a socket's opening snapshot)."""
        return websocket_text_frame(with_server_time(self.payload, server_time_ms))


class Subscriber(Protocol):
    """A client the hub pushes every change of its SKUs to (an open WebSocket)."""

    def push(self, entry: Entry) -> None:
        """Deliver a snapshot now, or keep it as the newest of its SKU until it can be."""

    def keep_alive(self, now_s: float) -> bool:
        """Ping the peer, or close it if it stopped answering; True when it was closed."""

    def heartbeat(self, frame: bytes) -> None:
        """Send the heartbeat frame, if this client asked for heartbeats."""

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Close the connection (e.g. 1001 while the instance drains)."""


# sockets pushed to before the event loop may serve something else (a slice of 200 takes
# a few ms; a whole fan-out to 2,000 sockets held the loop for 30-80 ms)
FAN_OUT_SLICE = 200


class LiveHub:
    """Latest snapshot per SKU, and the local long-polls and sockets waiting on them."""

    def __init__(self, instance_id: str, clock: RedisClock | None = None,
                 push_interval_s: float = 0.0):
        self.instance_id = instance_id
        self.clock = clock or RedisClock()
        self.push_interval_s = push_interval_s  # 0: every change fans out at once
        self._entries: dict[str, Entry] = {}
        self._fanned_out_at: dict[str, float] = {}  # SKU -> monotonic time of its last fan-out
        self._fan_out_due: set[str] = set()  # SKUs with a fan-out scheduled
        self._waiters: dict[str, set[asyncio.Future[Entry | None]]] = defaultdict(set)
        self._subscribers: dict[str, set[Subscriber]] = defaultdict(set)
        # snapshots handed out, by transport (read by /metrics; counted per change, not
        # per client, so the fan-out loop stays bare)
        self.deliveries = {"websocket": 0, "longpoll": 0}

    def current(self, sku: str) -> Entry | None:
        """The latest snapshot this process has of the SKU (None before the first sync)."""
        return self._entries.get(sku)

    def apply(self, snapshot: Snapshot) -> bool:
        """Take a snapshot if it is newer than the one held, and wake its clients."""
        held = self._entries.get(snapshot.sku)
        if not snapshot.is_newer_than(held.snapshot if held else None):
            return False
        self._entries[snapshot.sku] = Entry.build(snapshot, self.instance_id,
                                                  self.clock.now_ms())
        if snapshot.sku in self._fan_out_due:
            return True  # goes out at the end of the interval, as the newest
        wait_s = (self._fanned_out_at.get(snapshot.sku, -math.inf) + self.push_interval_s
                  - time.monotonic())
        if wait_s <= 0:
            self._fan_out(snapshot.sku)
        else:
            self._fan_out_due.add(snapshot.sku)
            asyncio.get_running_loop().call_later(wait_s, self._fan_out, snapshot.sku)
        return True

    def _fan_out(self, sku: str) -> None:
        """Wake the SKU's parked long-polls and push its newest entry to its sockets, a
        slice at a time: the event loop serves other requests between slices, so a
        fan-out to thousands of sockets never holds /readyz or a POST for its whole
        length (measured: bench/toggle.py)."""
        self._fan_out_due.add(sku)  # until the round ends: apply() only stores the newest
        entry = self._entries[sku]
        waiters = self._waiters.pop(sku, ())
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(entry)
        # copy: a push may close a dead socket, whose cleanup edits the set
        subscribers = list(self._subscribers.get(sku, ()))
        self.deliveries["longpoll"] += len(waiters)
        self.deliveries["websocket"] += len(subscribers)
        self._push_slice(sku, entry, subscribers, 0)

    def _push_slice(self, sku: str, entry: Entry, subscribers: list[Subscriber],
                    start: int) -> None:
        for subscriber in subscribers[start:start + FAN_OUT_SLICE]:
            try:
                subscriber.push(entry)
            except Exception:  # one broken socket must not end the round for the others
                # (nor leave the SKU marked as due, which would stop its fan-out for good)
                log.exception("pushing %s to a socket failed", sku)
        if start + FAN_OUT_SLICE < len(subscribers):
            asyncio.get_running_loop().call_soon(self._push_slice, sku, entry, subscribers,
                                                 start + FAN_OUT_SLICE)
            return
        self._fanned_out_at[sku] = time.monotonic()
        if self._entries[sku] is entry:
            self._fan_out_due.discard(sku)
        else:  # a newer snapshot came during the round: it goes out after the interval
            asyncio.get_running_loop().call_later(self.push_interval_s, self._fan_out, sku)

    def wait(self, skus: Iterable[str]) -> asyncio.Future[Entry | None]:
        """A future resolved by the next change of any of the SKUs; cancel it to stop."""
        future: asyncio.Future[Entry | None] = asyncio.get_running_loop().create_future()
        watched = list(skus)
        for sku in watched:
            self._waiters[sku].add(future)

        def forget(_: object) -> None:
            for sku in watched:
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
        """Push every later change of these SKUs to the subscriber."""
        for sku in skus:
            self._subscribers[sku].add(subscriber)

    def detach(self, subscriber: Subscriber, skus: Iterable[str]) -> None:
        """Stop pushing to the subscriber (it closed)."""
        for sku in skus:
            group = self._subscribers.get(sku)
            if group is not None:
                group.discard(subscriber)

    def subscribers(self) -> set[Subscriber]:
        """Every open subscriber, once each."""
        return {s for group in self._subscribers.values() for s in group}

    def counts(self) -> dict[str, int]:
        """How many local clients wait, by kind (for /metrics and heartbeats)."""
        return {"longpoll": len({w for g in self._waiters.values() for w in g}),
                "websocket": len(self.subscribers())}
