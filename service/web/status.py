"""`GET /cart/status`: the long-poll of seed listing 5-4, with a `since` cursor."""

from __future__ import annotations

import asyncio
import json
import random

from service.live import Entry, with_server_time
from service.web.base import BaseHandler
from service.web.cursors import is_ahead_of, parse_cursors


class StatusPollHandler(BaseHandler):
    """Answers at once when a SKU is newer than its cursor; otherwise parks on the local hub
    (no Redis call) until a change or the jittered hold time, then answers the current
    snapshot with 200, as the seed's client re-polls after every answer.
    """

    _waiter: asyncio.Future[Entry | None] | None = None

    async def get(self) -> None:
        skus = self.requested_skus()
        cursors = parse_cursors(self.get_query_argument("since", None), len(skus))
        entries = self.current_entries(skus)
        seen_all = cursors is None or not any(map(is_ahead_of, entries, cursors))
        if seen_all and not self.services.draining:
            waiter = self._waiter = self.services.hub.wait(skus)
            # jitter, so clients parked together do not all time out together
            hold_s = self.services.config.longpoll_timeout_s * random.uniform(0.85, 1.0)
            await asyncio.wait([waiter], timeout=hold_s)
            if waiter.cancelled():  # the client went away
                return
            waiter.cancel()
            entries = self.current_entries(skus)
        now_ms = self.services.store.clock.now_ms()
        if len(entries) == 1:
            self.write_json(with_server_time(entries[0].payload, now_ms))
        else:
            instance = json.dumps(self.services.config.instance_id).encode()
            self.write_json(with_server_time(b'{"books":[' + b",".join(e.payload for e in entries)
                                             + b'],"instance":' + instance + b"}", now_ms))

    def on_connection_close(self) -> None:
        if self._waiter is not None:
            self._waiter.cancel()
        super().on_connection_close()
