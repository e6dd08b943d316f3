"""Experiment, not part of `make bench-fanout`: the service with the socket changes proposed
in BENCHMARKS.md applied as monkeypatches, so they can be A/B-tested in one run:

    .venv/bin/python bench/fanout.py --baseline --compare proposed=bench/variant_proposed.py

Delete this file once service/ carries the changes (or keep it as the next experiment).
It patches, and only for this process:

1. StatusSocketHandler.push: write the pre-built frame with one socket.send() when the
   stream has nothing queued (no Future, no bytearray copy, no call_soon per socket);
   only a partial/blocked send falls back to IOStream.write + conflation as today.
2. Keepalive: Tornado's per-socket ping Task (websocket_ping_interval) is turned off and
   one task per process pings every socket every 30 s with a pre-built frame and closes
   those that have not answered (on_pong) for 75 s.
3. StatusSocketHandler.open: after the 101 reply, drop per-request state nothing reads
   again (request/response headers, ui namespace, parsed arguments, path args).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tornado.httputil import HTTPHeaders  # noqa: E402
from tornado.iostream import IOStream, StreamClosedError  # noqa: E402

import service.server as server  # noqa: E402
import service.sockets as sockets  # noqa: E402

KEEPALIVE_S = float(os.environ.get("BENCH_KEEPALIVE_S", "30"))
DEAD_AFTER_S = 2.5 * KEEPALIVE_S
PING_FRAME = b"\x89\x00"
EMPTY_HEADERS = HTTPHeaders()
EMPTY_ARGS: dict = {}
Handler = sockets.StatusSocketHandler


def send_now(self, frame: bytes):
    """Write frame; returns None when fully sent, else the Future of the queued rest."""
    stream = self.ws_connection.stream
    if type(stream) is IOStream and not stream.writing():
        try:
            sent = stream.socket.send(frame)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            stream.close(exc_info=exc)
            raise StreamClosedError() from exc
        if sent == len(frame):
            return None
        frame = frame[sent:]
    return stream.write(frame)


def push(self, entry) -> None:
    if self._pending is not None:
        self._pending[entry.snapshot.sku] = entry
        return
    connection = self.ws_connection
    if connection is None or connection.is_closing():
        return
    try:
        written = send_now(self, entry.frame)
    except StreamClosedError:
        return
    if written is not None and connection.stream.writing():
        self._pending = {}
        written.add_done_callback(self._flush_pending)


_open = Handler.open


def open_(self):
    _open(self)
    self.last_seen = time.monotonic()
    request = self.request
    request.headers = EMPTY_HEADERS
    self._headers = EMPTY_HEADERS
    self.ui = None
    request.arguments = request.query_arguments = EMPTY_ARGS
    request.body_arguments = request.files = EMPTY_ARGS
    self.path_args = self.path_kwargs = None


def on_pong(self, data):
    self.last_seen = time.monotonic()


async def keepalive(hub) -> None:
    while True:
        await asyncio.sleep(KEEPALIVE_S)
        now = time.monotonic()
        for handler in list(hub.subscribers()):
            connection = handler.ws_connection
            if connection is None or connection.is_closing() or handler._pending is not None:
                continue
            if now - getattr(handler, "last_seen", now) > DEAD_AFTER_S:
                handler.close(reason="ping timed out")
                continue
            try:
                send_now(handler, PING_FRAME)
            except StreamClosedError:
                pass


_make_app = server.make_app
_tasks: list[asyncio.Task] = []


def make_app(services):
    app = _make_app(services)
    app.settings["websocket_ping_interval"] = 0
    _tasks.append(asyncio.get_running_loop().create_task(keepalive(services.hub)))
    return app


Handler.push = push
Handler.open = open_
Handler.on_pong = on_pong
server.make_app = make_app

if __name__ == "__main__":
    from service.cli import main
    sys.exit(main(["serve", *sys.argv[1:]]))
