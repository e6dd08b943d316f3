"""Which Redis node a key's commands travel to.

On one Redis (or the primary a set of Sentinels names) every key lives on the one node.
On a Redis Cluster each key lives on the primary that owns its hash slot; redis-py's
`RedisCluster` keeps that slot map (`get_node_from_key`) and follows MOVED and ASK
redirections for the commands sent through it. Two kinds of work cannot go through it:
a pipeline of scripts (redis-py refuses EVALSHA in cluster pipelines) and a change
followed by WAIT (WAIT confirms the writes of its own connection, so it must share the
write's node and connection). Those use a plain client per node, chosen from the
cluster's own slot map; a command that still meets a redirection (the slot moved since
the map was read, or is moving now) is sent again through `router`, which follows it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    RedisClusterException,
    RedisError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# Replies that mean "not on this node, not now": MOVED (a subclass of AskError), ASK,
# TRYAGAIN (a multi-key command while the slot's keys are split by a migration) and
# CLUSTERDOWN. None of them ran the command.
REDIRECTIONS = (AskError, TryAgainError, ClusterDownError)

T = TypeVar("T")

# a cluster's slot map is read again at most this often when node clients meet errors
REFRESH_INTERVAL_S = 0.5
# channels per SSUBSCRIBE on one Redis (a catalog of thousands in a few commands)
SUBSCRIBE_BATCH = 1000


class RedisNodes:
    """One Redis: every key on the one node, named ""."""

    def __init__(self, commands: aioredis.Redis, subscriber: aioredis.Redis | None = None):
        self.commands = commands
        self._subscriber = subscriber or commands
        # the client that reaches any key itself (the cluster client follows redirections)
        self.router: Any = commands

    def name_of(self, key: str) -> str:
        return ""

    def group(self, keys: Sequence[str]) -> dict[str, list[int]]:
        """The positions of `keys`, grouped by the node that owns them."""
        groups: dict[str, list[int]] = {}
        for index, key in enumerate(keys):
            groups.setdefault(self.name_of(key), []).append(index)
        return groups

    def client(self, name: str) -> aioredis.Redis:
        """A plain client of the node (retries briefly, like every commands client)."""
        return self.commands

    def subscriber(self, name: str) -> aioredis.Redis:
        """A client of the node for pub/sub: it never retries by itself (feed.py)."""
        return self._subscriber

    def primaries(self) -> list[str]:
        return [""]

    async def on_node_of(self, key: str, call: Callable[[Any], Awaitable[T]]) -> T:
        """`call(client)` with the plain client of the key's node; sent again through
        `router` when it meets a redirection. (redis-py's cluster client closes every
        connection it has when one node fails, so a command of a healthy shard in
        flight through it just then fails too; a node's own client is left alone.)"""
        try:
            return await call(self.client(self.name_of(key)))
        except REDIRECTIONS:
            return await call(self.router)
        except (RedisConnectionError, RedisTimeoutError):
            await self.refresh()  # the node may be gone: the next call asks again
            raise

    def subscribe_batches(self, channels: Sequence[str]) -> list[Sequence[str]]:
        """The channels in groups that one SSUBSCRIBE may take."""
        return [channels[start:start + SUBSCRIBE_BATCH]
                for start in range(0, len(channels), SUBSCRIBE_BATCH)]

    async def refresh(self) -> None:
        """Read the slot map again (a node failed or a slot moved); nothing for one Redis."""

    async def aclose(self) -> None:
        """Close the clients of the nodes but `commands` (its owner closes it)."""
        if self._subscriber is not self.commands:
            await self._subscriber.aclose()


class ClusterNodes(RedisNodes):
    """A Redis Cluster: keys on the primary that owns their slot, by redis-py's slot map."""

    def __init__(self, cluster: RedisCluster, client_options: dict[str, Any],
                 subscriber_options: dict[str, Any]):
        super().__init__(cluster)  # type: ignore[arg-type]  # the cluster client is not a Redis
        self.cluster = cluster
        self.router = cluster
        self._client_options = client_options
        self._subscriber_options = subscriber_options
        self._clients: dict[str, aioredis.Redis] = {}
        self._subscribers: dict[str, aioredis.Redis] = {}
        self._refreshing: asyncio.Task[None] | None = None
        self._refreshed_at = 0.0

    def name_of(self, key: str) -> str:
        node = self.cluster.get_node_from_key(key)
        if node is None:  # raises SlotNotCoveredError (a ClusterDownError) itself, today
            raise ClusterDownError(f"no node serves the slot of {key}")
        return str(node.name)

    def client(self, name: str) -> aioredis.Redis:
        return self._node_client(self._clients, name, self._client_options)

    def subscriber(self, name: str) -> aioredis.Redis:
        return self._node_client(self._subscribers, name, self._subscriber_options)

    def _node_client(self, cache: dict[str, aioredis.Redis], name: str,
                     options: dict[str, Any]) -> aioredis.Redis:
        if name not in cache:
            host, _, port = name.rpartition(":")
            cache[name] = aioredis.Redis(host=host, port=int(port), **options)
        return cache[name]

    def primaries(self) -> list[str]:
        return sorted(node.name for node in self.cluster.get_primaries())

    def subscribe_batches(self, channels: Sequence[str]) -> list[Sequence[str]]:
        # a cluster takes one SSUBSCRIBE per hash slot (CROSSSLOT otherwise)
        by_slot: dict[int, list[str]] = {}
        for channel in channels:
            by_slot.setdefault(key_slot(channel.encode()), []).append(channel)
        return list(by_slot.values())

    async def refresh(self) -> None:
        """Read the slot map again; concurrent callers share one read, and reads are at
        least REFRESH_INTERVAL_S apart (every request of a failed shard asks for one). A
        map that cannot be read now is kept: the caller's own error says what happened."""
        loop = asyncio.get_running_loop()
        if self._refreshing is None:
            if loop.time() - self._refreshed_at < REFRESH_INTERVAL_S:
                return
            self._refreshing = loop.create_task(self._read_slot_map())
        task = self._refreshing
        await asyncio.shield(task)
        if self._refreshing is task:
            self._refreshing = None
            self._refreshed_at = loop.time()

    async def _read_slot_map(self) -> None:
        try:
            await self.cluster.nodes_manager.initialize()
        except (RedisError, RedisClusterException, OSError):  # (no node answered)
            pass

    async def aclose(self) -> None:
        for client in [*self._clients.values(), *self._subscribers.values()]:
            await client.aclose()
        self._clients.clear()
        self._subscribers.clear()
