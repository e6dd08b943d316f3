"""Work on many books at once: one command per book, pipelined, CHUNK books per round
trip. Every such operation (seeding, reading snapshots, the sweep, reset, new epochs)
goes through `per_book`, the one place that decides which connection a book's command
travels on: today the one client; on a Redis Cluster, the client of the node that owns
the book's slot."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

# commands per pipeline when a command touches every book (thousands of them)
CHUNK = 500

# queues the book's one command on the pipeline (a script call, awaitable, or a plain
# command such as pipe.zscore)
Queue = Callable[[Pipeline, str], Any]


def chunks(items: Sequence[str], size: int = CHUNK) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


async def per_book(redis: aioredis.Redis, skus: Sequence[str], queue: Queue,
                   size: int = CHUNK) -> list[Any]:
    """The reply of each book's command, in the order of `skus`."""
    replies: list[Any] = []
    for group in chunks(skus, size):
        async with redis.pipeline(transaction=False) as pipe:
            for sku in group:
                queued = queue(pipe, sku)
                if inspect.iscoroutine(queued):  # a script: it checks its SHA first
                    await queued
            replies += await pipe.execute()
    return replies
