"""The Redis server's clock, as an instance estimates it between round trips.

Snapshots carry the Redis time of their change (`changedAt`); replies carry the time
they were made (`serverTime`) on the same clock, so a client can measure delivery lag
and its own offset against one clock, whichever instance answers. Every script reply
and every sweep tells the instance Redis's time; in between it adds its own elapsed time.
"""

from __future__ import annotations

import time


class RedisClock:
    """Redis time (ms since the epoch), estimated as local time plus the last seen offset."""

    def __init__(self) -> None:
        self.offset_ms = 0.0

    def observe(self, redis_now_ms: int) -> None:
        """Take the Redis time a reply just carried (the round trip is well under 1 ms
        on a LAN; the estimate errs by at most that)."""
        if redis_now_ms > 0:
            self.offset_ms = redis_now_ms - time.time() * 1000

    def now_ms(self) -> int:
        return int(time.time() * 1000 + self.offset_ms)
