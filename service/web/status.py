"""`GET /cart/status`: the long-poll of seed listing 5-4, with a `since` cursor."""

from __future__ import annotations

import asyncio
import base64
import json
import random

from service.live import Entry, with_server_time
from service.web.base import BaseHandler
from service.web.cursors import Cursor, is_ahead_of, is_behind, parse_cursors
from service.web.errors import ApiError

# A client without `since` (the seed's) gets, on every answer, a cookie with the versions
# answered, and its next poll answers at once if a change came in between (the seed's
# protocol alone would wait for the next change and miss it). A client re-polls at once,
# so a short life is enough. Two windows of one browser share the cookie: the one that
# did not get the last answer may wait for the next change or the hold time (never
# longer) before it shows the change the other window was answered.
LAST_ANSWERED_COOKIE = "bb_lp_answered"
LAST_ANSWERED_MAX_AGE_S = 120


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
        if cursors is not None and any(map(is_behind, entries, cursors)):
            await self.catch_up([sku for sku, entry, cursor in zip(skus, entries, cursors)
                                 if is_behind(entry, cursor)])
            entries = self.current_entries(skus)
        # a bare version ahead of Redis itself is from before Redis started over: the
        # client has not seen the current state, so it is news
        seen_all = cursors is None or not any(
            is_ahead_of(entry, cursor) or (cursor[0] is None and is_behind(entry, cursor))
            for entry, cursor in zip(entries, cursors))
        if cursors is None:
            # the seed's client sends no cursor: what this browser was last answered
            # (a cookie) says whether a change came between two of its polls
            last = self._last_answered(skus)
            seen_all = last is None or not any(map(is_ahead_of, entries, last))
        if seen_all and not self.services.draining:
            loop = asyncio.get_running_loop()
            # jitter, so clients parked together do not all time out together
            deadline = loop.time() + (self.services.config.longpoll_timeout_s
                                      * random.uniform(0.85, 1.0))
            parked_with = entries
            while True:
                waiter = self._waiter = self.services.hub.wait(skus)
                await asyncio.wait([waiter], timeout=max(0.0, deadline - loop.time()))
                if waiter.cancelled():  # the client went away
                    return
                waiter.cancel()
                entries = self.current_entries(skus)
                # a coalesced fan-out may bring what this poll already had when it
                # parked: that is no news, so it parks again for the rest of its hold
                if (entries != parked_with or loop.time() >= deadline
                        or self.services.draining):
                    break
        if cursors is not None and any(cursor[0] is not None and is_behind(entry, cursor)
                                       for entry, cursor in zip(entries, cursors)):
            # never an answer older than what the client has seen (its count would go back).
            # A bare version (the seed's clients) may be from before Redis started over
            # with a new epoch: Redis, read just now, is the truth, and it is answered.
            raise ApiError(503, "behind", "this instance has not caught up with the version "
                           "you have seen; retry shortly")
        self._remember_answered(skus, entries)
        now_ms = self.services.store.clock.now_ms()
        if len(entries) == 1:
            self.write_json(with_server_time(entries[0].payload, now_ms))
        else:
            instance = json.dumps(self.services.config.instance_id).encode()
            self.write_json(with_server_time(b'{"books":[' + b",".join(e.payload for e in entries)
                                             + b'],"instance":' + instance + b"}", now_ms))

    def _last_answered(self, skus: list[str]) -> list[Cursor] | None:
        """The cursors of this browser's last answer for exactly these books, if any."""
        raw = self.get_cookie(LAST_ANSWERED_COOKIE)
        try:
            answered = json.loads(base64.urlsafe_b64decode(raw or ""))
            return parse_cursors(",".join(str(answered[sku]) for sku in skus), len(skus))
        except (ValueError, TypeError, KeyError, RecursionError, ApiError):
            return None  # none, or not ours: the seed's behaviour (wait for a change)

    def _remember_answered(self, skus: list[str], entries: list[Entry]) -> None:
        answered = {sku: f"{e.snapshot.epoch}:{e.snapshot.version}"
                    for sku, e in zip(skus, entries)}
        value = base64.urlsafe_b64encode(json.dumps(answered, separators=(",", ":")).encode())
        self.set_cookie(LAST_ANSWERED_COOKIE, value.decode(), path="/cart/status",
                        httponly=True, samesite="Lax", secure=self.is_https(),
                        max_age=LAST_ANSWERED_MAX_AGE_S)

    def on_connection_close(self) -> None:
        if self._waiter is not None:
            self._waiter.cancel()
        super().on_connection_close()
