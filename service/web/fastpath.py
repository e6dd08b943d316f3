"""The one place that relies on Tornado's internals, for the WebSocket fan-out's speed.

Measured on Tornado 6.5/6.6 (pyproject.toml pins that range). Two shortcuts:

* `send_frame` writes a ready-made frame straight to the socket of a plain `IOStream`
  when nothing is queued, instead of `write_message` (which frames per client, allocates
  a Future and schedules a callback per message). It relies on `IOStream.socket`,
  `IOStream.writing()` and `IOStream.write()`, on frames being sent unmasked and
  uncompressed by a server (`StatusSocketHandler.get_compression_options` returns None),
  and on nothing else writing to the stream between our calls.
* `forget_request` empties the parsed request an open socket never reads again (about a
  quarter of an idle socket's memory). It relies on `HTTPHeaders()` taking no arguments,
  on the handshake's response headers living in `RequestHandler._headers`, on the
  handshake coroutine holding the same header objects, and on nothing reading the
  request's arguments once the socket is open.

tests/unit/test_fastpath.py checks each assumption and fails loudly, naming what to
re-measure (`make bench-fanout`), when a Tornado upgrade breaks one.
"""

from __future__ import annotations

from asyncio import Future
from typing import Any

import tornado.web
from tornado.iostream import IOStream, StreamClosedError

# A shared empty stand-in for per-request state an open socket never reads again.
_NO_ARGUMENTS: dict[str, Any] = {}


def send_frame(stream: Any, frame: bytes) -> Future[None] | None:
    """Send `frame` now if nothing is queued; else queue it (or its unsent rest).

    Returns None when the kernel took the whole frame, or the Future of a write still
    queued. Raises StreamClosedError when the stream is (or has just become) unusable.
    """
    # only a plain TCP stream: an SSLIOStream's socket must not be written around TLS
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
    queued: Future[None] = stream.write(frame)
    # write() sends what the kernel takes at once; only a rest still queued is pending
    return queued if stream.writing() else None


def forget_request(handler: tornado.web.RequestHandler) -> None:
    """Free the parsed request of a handler whose WebSocket is open."""
    request = handler.request
    # Emptied in place, as Tornado's suspended handshake coroutine still holds them;
    # re-running __init__ also frees the tables that a key-by-key clear would keep.
    request.headers.__init__()  # type: ignore[misc]
    handler._headers.__init__()  # type: ignore[misc]
    request.arguments = request.query_arguments = _NO_ARGUMENTS
    request.body_arguments = request.files = _NO_ARGUMENTS
    handler.ui = None  # type: ignore[assignment]
    handler.path_args = handler.path_kwargs = None  # type: ignore[assignment]
