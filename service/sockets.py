"""GET /cart/status with `Upgrade: websocket`: the WebSocket of seed listing 5-7.

On open it sends the current snapshot of each requested SKU, then every change. Pushes
bypass `write_message`, which frames per client, allocates a Future and schedules a
callback per message: the hub frames each change once and every socket sends those same
bytes with one `send()` call. A socket whose previous write is still queued gets only the
newest snapshot per SKU (conflation), so a slow reader never builds an unbounded queue.

Keep-alive is one task per process (`ping_sockets`), not Tornado's one task per socket:
with thousands of idle sockets the per-socket timers cost more memory than the sockets.
"""

from __future__ import annotations

import logging
import time
from asyncio import Future
from urllib.parse import urlparse

import tornado.websocket
from tornado.iostream import IOStream, StreamClosedError

from service.handlers import ApiError, ShopMixin
from service.live import Entry, LiveHub

log = logging.getLogger(__name__)

GOING_AWAY = 1001
PING_FRAME = b"\x89\x00"  # an unmasked, empty ping: the same bytes for every socket
KEEPALIVE_INTERVAL_S = 30.0
# a peer that answered no ping for this long is gone (two missed pings and then some)
SILENT_PEER_TIMEOUT_S = 2.5 * KEEPALIVE_INTERVAL_S

# A shared empty stand-in for per-request state an open socket never reads again.
_NO_ARGUMENTS: dict = {}


def send_frame(stream: IOStream, frame: bytes) -> Future | None:
    """Send `frame` now if nothing is queued; else queue it (or its unsent rest).

    Returns None when the kernel took the whole frame, or the Future of the queued write.
    Raises StreamClosedError when the stream is (or has just become) unusable.
    """
    if type(stream) is IOStream and not stream.writing():
        try:
            sent = stream.socket.send(frame)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            stream.close(exc_info=exc)
            raise StreamClosedError(real_error=exc) from exc
        if sent == len(frame):
            return None
        frame = frame[sent:]
    return stream.write(frame)


class StatusSocketHandler(ShopMixin, tornado.websocket.WebSocketHandler):
    skus: tuple[str, ...] = ()
    _pending: dict[str, Entry] | None = None
    last_heard: float = 0.0

    def prepare(self):
        # runs before the upgrade, so bad input gets an ordinary HTTP error
        if self.services.draining:
            raise ApiError(503, "draining", "this instance is shutting down; reconnect")
        self.skus = tuple(self.requested_skus())
        self.current_entries(self.skus)

    def check_origin(self, origin: str) -> bool:
        # strict: only pages served from the very host:port the socket was opened to
        return urlparse(origin).netloc.lower() == self.request.host.lower()

    def open(self):
        self.last_heard = time.monotonic()
        self.services.hub.attach(self, self.skus)
        for entry in self.current_entries(self.skus):
            self.push(entry)
        self._forget_request()

    def _forget_request(self) -> None:
        # An idle socket lives for hours; the parsed request it came from is never read
        # again. Dropping it is about a quarter of an idle socket's memory.
        request = self.request
        # Emptied in place, as Tornado's suspended handshake coroutine still holds them;
        # re-running __init__ also frees the tables that a key-by-key clear would keep.
        request.headers.__init__()
        self._headers.__init__()
        request.arguments = request.query_arguments = _NO_ARGUMENTS
        request.body_arguments = request.files = _NO_ARGUMENTS
        self.ui = None
        self.path_args = self.path_kwargs = None

    def on_message(self, message):
        # Clients have nothing to say; reading (and ignoring) keeps Tornado from closing
        # the socket, and websocket_max_message_size bounds what they can send.
        self.last_heard = time.monotonic()

    def on_pong(self, data):
        self.last_heard = time.monotonic()

    def on_close(self):
        self.services.hub.detach(self, self.skus)
        self._pending = None

    def push(self, entry: Entry) -> None:
        """Send a snapshot now, or park it as the newest for its SKU while a write is busy."""
        if self._pending is not None:
            self._pending[entry.snapshot.sku] = entry
            return
        self._send(entry.frame)

    def _send(self, frame: bytes) -> None:
        connection = self.ws_connection
        if connection is None or connection.is_closing():
            return
        try:
            queued = send_frame(connection.stream, frame)
        except StreamClosedError:
            return
        if queued is not None and connection.stream.writing():
            # the kernel buffer is full: conflate until this write drains
            self._pending = {}
            queued.add_done_callback(self._flush_pending)

    def _flush_pending(self, written: Future) -> None:
        pending, self._pending = self._pending, None
        if pending is None or written.exception() is not None:
            return
        for entry in pending.values():
            self.push(entry)


def ping_sockets(hub: LiveHub, now: float | None = None) -> int:
    """Ping every open socket; close those silent for SILENT_PEER_TIMEOUT_S. Returns closed."""
    now = time.monotonic() if now is None else now
    closed = 0
    for handler in list(hub.subscribers()):
        if handler.ws_connection is None or handler.ws_connection.is_closing():
            continue
        if now - handler.last_heard > SILENT_PEER_TIMEOUT_S:
            handler.close(GOING_AWAY, "no answer to pings")
            closed += 1
        elif handler._pending is None:
            # a socket with a write queued is not idle and gets no ping; the
            # queue is drained (or the peer timed out) before the next round
            handler._send(PING_FRAME)
    return closed
