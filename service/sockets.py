"""GET /cart/status with `Upgrade: websocket`: the WebSocket of seed listing 5-7.

On open it sends the current snapshot of each requested SKU, then every change. Pushes
bypass `write_message` (which frames per client and starts a task per message): the hub
frames each change once and every socket writes those same bytes. A socket whose
previous write is still in flight gets only the newest snapshot per SKU (conflation), so
a slow reader never builds an unbounded queue.
"""

from __future__ import annotations

import logging
from urllib.parse import urlparse

import tornado.websocket
from tornado.iostream import StreamClosedError

from service.handlers import ApiError, ShopMixin
from service.live import Entry

log = logging.getLogger(__name__)

GOING_AWAY = 1001


class StatusSocketHandler(ShopMixin, tornado.websocket.WebSocketHandler):
    skus: list[str] = []
    _pending: dict[str, Entry] | None = None

    def prepare(self):
        # runs before the upgrade, so bad input gets an ordinary HTTP error
        if self.services.draining:
            raise ApiError(503, "draining", "this instance is shutting down; reconnect")
        self.skus = self.requested_skus()
        self.current_entries(self.skus)

    def check_origin(self, origin: str) -> bool:
        # strict: only pages served from the very host:port the socket was opened to
        return urlparse(origin).netloc.lower() == self.request.host.lower()

    def open(self):
        self.services.hub.attach(self, self.skus)
        for entry in self.current_entries(self.skus):
            self.push(entry)

    def on_message(self, message):
        # Clients have nothing to say; reading (and ignoring) keeps Tornado from closing
        # the socket, and websocket_max_message_size bounds what they can send.
        pass

    def on_close(self):
        self.services.hub.detach(self, self.skus)
        self._pending = None

    def push(self, entry: Entry) -> None:
        """Send a snapshot now, or park it as the newest for its SKU while a write is busy."""
        if self._pending is not None:
            self._pending[entry.snapshot.sku] = entry
            return
        connection = self.ws_connection
        if connection is None or connection.is_closing():
            return
        stream = connection.stream
        try:
            written = stream.write(entry.frame)
        except StreamClosedError:
            return
        if stream.writing():
            # the kernel buffer is full: conflate until this write drains
            self._pending = {}
            written.add_done_callback(self._flush_pending)

    def _flush_pending(self, written) -> None:
        pending, self._pending = self._pending, None
        if pending is None or written.exception() is not None:
            return
        for entry in pending.values():
            self.push(entry)
