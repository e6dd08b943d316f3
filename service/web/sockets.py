"""GET /cart/status with `Upgrade: websocket`: the WebSocket of seed listing 5-7.

On open it sends the current snapshot of each requested SKU, then every change. A page
that reconnects sends its `since` cursors: a book this instance is behind on (the page
saw a newer version elsewhere) is not sent on open, which would take the page's count
back; the instance reads it from Redis and pushes it once it has it. Pushes
bypass `write_message`, which frames per client, allocates a Future and schedules a
callback per message: the hub frames each change once and every socket sends those same
bytes with one `send()` call. A socket whose previous write is still queued gets only the
newest snapshot per SKU (conflation), so a slow reader never builds an unbounded queue.

Keep-alive is one task per process (`ping_sockets`), not Tornado's one task per socket:
with thousands of idle sockets the per-socket timers cost more memory than the sockets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from asyncio import Future
from typing import Any

import tornado.websocket
from tornado.iostream import StreamClosedError

from service.live import Entry, LiveHub, websocket_text_frame
from service.web import sessions
from service.web.base import ShopMixin
from service.web.cursors import Cursor, is_behind, parse_cursors
from service.web.errors import ApiError
from service.web.fastpath import forget_request, send_frame

log = logging.getLogger(__name__)

GOING_AWAY = 1001
PING_FRAME = b"\x89\x00"  # an unmasked, empty ping: the same bytes for every socket
KEEPALIVE_INTERVAL_S = 30.0
# a peer that answered no ping for this long is gone (two missed pings and then some)
SILENT_PEER_TIMEOUT_S = 2.5 * KEEPALIVE_INTERVAL_S


def heartbeat_frame(server_time_ms: int) -> bytes:
    """`{"type": "heartbeat", "serverTime": ms}`: the same frame for every socket."""
    return websocket_text_frame(b'{"type":"heartbeat","serverTime":%d}' % server_time_ms)


class StatusSocketHandler(ShopMixin, tornado.websocket.WebSocketHandler):
    skus: tuple[str, ...] = ()
    cursors: list[Cursor] | None = None  # what the page has seen (`since`), if it said
    _catching_up: Future[None] | None = None
    # ?heartbeat=1: the page hears from the server every BB_HEARTBEAT_S, so it can tell a
    # silent (hung) server from a quiet book; the seed's clients do not ask
    wants_heartbeat = False
    _pending: dict[str, Entry] | None = None
    last_heard: float = 0.0

    def prepare(self) -> None:
        # runs before the upgrade, so bad input gets an ordinary HTTP error
        if self.services.draining:
            raise ApiError(503, "draining", "this instance is shutting down; reconnect")
        origin = self.request.headers.get("Origin")
        if origin is not None and sessions.origin_host(origin) is None:
            # Tornado's own origin check, which runs before check_origin, raises on an
            # Origin urlsplit refuses ("http://["): a 500 for any client that sends one
            raise ApiError(403, "cross_site", "this Origin names no site")
        self.skus = tuple(self.requested_skus())
        # An attribute of the instance only when the client gave it: a socket's instance
        # dict holds about 30 keys (most of them Tornado's), and past CPython's limit for
        # dicts that share their keys with the class's other instances each socket pays
        # for a dict of its own, about 1.3 KB more per idle socket (make bench-fanout).
        cursors = parse_cursors(self.get_query_argument("since", None), len(self.skus))
        if cursors is not None:
            self.cursors = cursors
        self.current_entries(self.skus)
        if self.get_query_argument("heartbeat", "") == "1":
            self.wants_heartbeat = True

    def check_origin(self, origin: str) -> bool:
        # strict: only pages served from the very host:port the socket was opened to
        return sessions.is_same_origin(origin, self.request.host)

    def get_compression_options(self) -> dict[str, Any] | None:
        # never negotiate permessage-deflate: every socket is sent the same ready-made,
        # uncompressed frame (service.web.fastpath)
        return None

    def open(self, *args: str, **kwargs: str) -> None:
        self.last_heard = time.monotonic()
        self.services.hub.attach(self, self.skus)
        now_ms = self.services.store.clock.now_ms()
        behind = []
        for index, entry in enumerate(self.current_entries(self.skus)):
            if self.cursors is not None and is_behind(entry, self.cursors[index]):
                behind.append(entry.snapshot.sku)  # never older than what the page has
            elif self._pending is not None:  # a slow reader from the first frame on
                self._pending[entry.snapshot.sku] = entry
            else:
                self._send(entry.frame_at(now_ms))
        if behind:
            # kept, so the task is not collected while it runs
            self._catching_up = asyncio.ensure_future(self.catch_up(behind))
            self._catching_up.add_done_callback(_log_failed_catch_up)
        # an idle socket lives for hours; the request it came from is never read again
        forget_request(self)

    def on_message(self, message: str | bytes) -> None:
        # Clients have nothing to say; reading (and ignoring) keeps Tornado from closing
        # the socket, and websocket_max_message_size bounds what they can send.
        self.last_heard = time.monotonic()

    def on_pong(self, data: bytes) -> None:
        self.last_heard = time.monotonic()

    def on_close(self) -> None:
        self.services.hub.detach(self, self.skus)
        self._pending = None

    def push(self, entry: Entry) -> None:
        """Send a snapshot now, or park it as the newest for its SKU while a write is busy."""
        if self._pending is not None:
            self._pending[entry.snapshot.sku] = entry
            return
        self._send(entry.frame)

    def keep_alive(self, now_s: float) -> bool:
        """Ping the peer, or close it if it answered nothing for SILENT_PEER_TIMEOUT_S."""
        connection = self.ws_connection
        if connection is None or connection.is_closing():
            return False
        if now_s - self.last_heard > SILENT_PEER_TIMEOUT_S:
            self.close(GOING_AWAY, "no answer to pings")
            return True
        if self._pending is None:
            # a socket with a write queued is not idle and gets no ping; the
            # queue is drained (or the peer timed out) before the next round
            self._send(PING_FRAME)
        return False

    def heartbeat(self, frame: bytes) -> None:
        """Send a heartbeat if this client asked; a socket whose write is queued is not
        silent and is skipped (the queued snapshots are news enough)."""
        if self.wants_heartbeat and self._pending is None:
            self._send(frame)

    def _send(self, frame: bytes) -> None:
        connection = self.ws_connection
        if connection is None or connection.is_closing():
            return
        try:
            queued = send_frame(connection.stream, frame)
        except StreamClosedError:
            return
        if queued is not None:
            # the kernel buffer is full: conflate until this write drains
            self._pending = {}
            queued.add_done_callback(self._flush_pending)

    def _flush_pending(self, written: Future[None]) -> None:
        pending, self._pending = self._pending, None
        if pending is None or written.exception() is not None:
            return
        for entry in pending.values():
            self.push(entry)


def send_heartbeats(hub: LiveHub, server_time_ms: int) -> None:
    """One heartbeat frame, to every socket that asked for heartbeats."""
    frame = heartbeat_frame(server_time_ms)
    for subscriber in list(hub.subscribers()):
        subscriber.heartbeat(frame)


def ping_sockets(hub: LiveHub, now_s: float | None = None) -> int:
    """Ping every open socket; close those silent for SILENT_PEER_TIMEOUT_S. Returns closed."""
    now_s = time.monotonic() if now_s is None else now_s
    return sum(subscriber.keep_alive(now_s) for subscriber in list(hub.subscribers()))


def _log_failed_catch_up(task: Future[None]) -> None:
    """A catch-up that could not reach Redis: the subscription brings the change later."""
    if not task.cancelled() and task.exception() is not None:
        log.warning("could not catch up a reopened socket from Redis: %s", task.exception())
