"""Work on many books at once: one command per book, pipelined, CHUNK books per round
trip. Every such operation (seeding, reading snapshots, the sweep, reset, new epochs)
goes through `per_book`, the one place that decides which connection a book's command
travels on: the one client, or on a Redis Cluster the client of the node that owns the
book's slot (service/redis_nodes.py), one pipeline per node."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service import redis_keys
from service.redis_nodes import REDIRECTIONS, RedisNodes

# commands per pipeline when a command touches every book (thousands of them)
CHUNK = 500

# queues the book's one command on a pipeline (a script call, awaitable, or a plain
# command such as pipe.zscore); given a client instead, it returns the reply's awaitable
Queue = Callable[[Any, str], Any]


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


async def per_book(nodes: RedisNodes, skus: Sequence[str], queue: Queue,
                   size: int = CHUNK) -> list[Any]:
    """The reply of each book's command, in the order of `skus`."""
    return await per_key(nodes, skus, redis_keys.stock_key, queue, size)


async def per_key(nodes: RedisNodes, items: Sequence[str], key_of: Callable[[str], str],
                  queue: Queue, size: int = CHUNK) -> list[Any]:
    """The same for commands on another key of each item than its book's (`key_of`
    gives it; an index partition, say): each goes to the node that owns that key."""
    replies: list[Any] = [None] * len(items)
    redirected = []
    groups = nodes.group([key_of(item) for item in items])
    for name, positions in groups.items():
        for part in chunks(positions, size):
            try:
                async with nodes.client(name).pipeline(transaction=False) as pipe:
                    for position in part:
                        queued = queue(pipe, items[position])
                        if inspect.iscoroutine(queued):  # a script: it checks its SHA first
                            await queued
                    results = await pipe.execute(raise_on_error=False)
            except (RedisConnectionError, RedisTimeoutError):
                await nodes.refresh()  # the node may be gone: the next attempt asks again
                raise
            for position, result in zip(part, results):
                if isinstance(result, REDIRECTIONS):
                    redirected.append(position)
                elif isinstance(result, Exception):
                    raise result
                else:
                    replies[position] = result
    # A slot that moved since the map was read, or is moving: the cluster client follows
    # the redirection (and reads the slot map again), one book at a time.
    for position in redirected:
        replies[position] = await queue(nodes.router, items[position])
    return replies
