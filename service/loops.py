"""Background loops that never spin and never die silently."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable


class Backoff:
    """Exponential backoff with full jitter: sleep random(0, min(cap, base * 2**n))."""

    def __init__(self, base_s: float = 0.1, cap_s: float = 5.0):
        self.base_s = base_s
        self.cap_s = cap_s
        self.attempt = 0

    def next_delay_s(self) -> float:
        delay = random.uniform(0, min(self.cap_s, self.base_s * 2 ** self.attempt))
        self.attempt = min(self.attempt + 1, 30)
        # never zero, so a persistent failure can not become a busy loop
        return max(delay, self.base_s / 2)

    def reset(self) -> None:
        self.attempt = 0


def raise_if_cancelling() -> None:
    """Re-raise a cancellation that a library turned into another exception.

    redis-py can swallow the CancelledError delivered mid-command (returning, or raising
    a ConnectionError instead); a loop that went on would then never stop. Call this
    before every wait in a background loop.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError()


async def every(interval_s: float, step: Callable[[], Awaitable[object]],
                log: logging.Logger, name: str) -> None:
    """Run `step` every interval (with +-10% jitter) until cancelled; failures back off."""
    backoff = Backoff(base_s=interval_s, cap_s=max(interval_s, 5.0))
    while True:
        try:
            await step()
            backoff.reset()
            delay = interval_s * random.uniform(0.9, 1.1)
        except (Exception, asyncio.CancelledError) as exc:
            # a loop that dies silently is worse than a logged error; only a cancellation
            # of this task ends it (not a library's stray CancelledError)
            raise_if_cancelling()
            delay = backoff.next_delay_s()
            log.warning("%s failed (%s: %s); retrying in %.2fs", name, type(exc).__name__, exc,
                        delay)
        raise_if_cancelling()
        await asyncio.sleep(delay)
