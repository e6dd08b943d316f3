"""Bookkeeping after a cart change that is made: the address's count, the sweeper's index.

Those keys have other hash tags than the book's, so on a Redis Cluster they may live on
another shard, one failing right now. Two rules follow. Their failure must not turn the
change's answer into an error (the client would think nothing changed), so it is logged
with the safety net that covers it. And they must not hold the answer for long: a shard
whose machine is gone answers nothing at all, and each command then waits out its
connect timeouts and retries (about 3 s, redis_connect.command_options), which made
every add of a healthy shard's book whose index entry lived on the dead one take that
long. So the answer waits for its steps (together) at most `wait_s`; a slower one goes on
by itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# a step takes about a millisecond when its node is healthy
WAIT_S = 0.25


class Bookkeeping:
    """Runs the steps after a change; keeps the ones that outlast the wait alive."""

    def __init__(self, wait_s: float = WAIT_S):
        self.wait_s = wait_s
        self.pending: set[asyncio.Task[None]] = set()  # (the loop keeps only weak references)

    async def after_change(self, *steps: tuple[Coroutine[Any, Any, Any], str]) -> None:
        """Run each (step, what) at once, waiting for them together at most `wait_s`.
        `what` names the step's safety net."""
        tasks = [asyncio.ensure_future(self._logged(step, what)) for step, what in steps]
        self.pending.update(tasks)
        for task in tasks:
            task.add_done_callback(self.pending.discard)
        await asyncio.wait(tasks, timeout=self.wait_s)  # a slower one goes on by itself

    @staticmethod
    async def _logged(step: Coroutine[Any, Any, Any], what: str) -> None:
        try:
            await step
        except RedisError as exc:
            log.warning("%s failed after the change was made: %s: %s", what,
                        type(exc).__name__, exc)
