"""At most one running task per key in this process: the local half of single flight."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class KeyedTasks(Generic[T]):
    """Tasks by key; a finished task forgets itself, and `aclose` cancels the rest."""

    def __init__(self, name: str, stop_timeout_s: float = 2.0):
        self.name = name
        self.stop_timeout_s = stop_timeout_s
        self._running: dict[str, asyncio.Task[T]] = {}
        self.closed = False

    def get(self, key: str) -> asyncio.Task[T] | None:
        """The task running for `key`, if any."""
        return self._running.get(key)

    def start(self, key: str, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run `coro` as the task of `key` (the caller checked that none runs)."""
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.name}-{key[:8]}")
        self._running[key] = task
        task.add_done_callback(lambda done: self._forget(key, done))
        # the exception is delivered to every awaiter; a task nobody awaited any more
        # (all its requesters gone) must not log "exception was never retrieved"
        task.add_done_callback(lambda done: done.cancelled() or done.exception())
        return task

    def __len__(self) -> int:
        return len(self._running)

    async def wait(self) -> None:
        """Return once no task runs (tasks started meanwhile are waited for too)."""
        while self._running:
            await asyncio.wait(list(self._running.values()))

    def _forget(self, key: str, task: asyncio.Task[T]) -> None:
        if self._running.get(key) is task:
            del self._running[key]

    async def aclose(self) -> None:
        """Cancel every running task and wait (briefly) for them to end."""
        self.closed = True
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=self.stop_timeout_s)
            if stuck:
                log.warning("%d %s task(s) did not stop in time", len(stuck), self.name)
