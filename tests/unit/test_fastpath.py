"""The Tornado internals service/web/fastpath.py relies on, checked against the installed
Tornado. A failure here means a Tornado upgrade changed one of them: fix the fast path (or
drop it for `write_message`), re-measure with `make bench-fanout`, and only then widen the
`tornado` range in pyproject.toml."""

import asyncio
import base64
import os
import socket

import pytest
import tornado
from tornado.httputil import HTTPHeaders
from tornado.iostream import IOStream
from tornado.websocket import websocket_connect

from service.inventory import Snapshot
from service.web.fastpath import forget_request

pytestmark = pytest.mark.timeout(20)

RE_MEASURE = ("the WebSocket fast path (service/web/fastpath.py) was measured on another "
              "Tornado; re-measure with `make bench-fanout`")


@pytest.fixture
async def shop(start_app):
    app = await start_app()
    for sku in app.services.catalog.skus:
        app.services.hub.apply(Snapshot(sku, 10, 1, "e1"))
    return app


def test_the_installed_tornado_is_one_the_fast_path_was_measured_on():
    assert tornado.version_info[:2] in ((6, 5), (6, 6)), f"Tornado {tornado.version}: {RE_MEASURE}"


def test_iostream_offers_what_send_frame_uses():
    for name in ("writing", "write", "close"):
        assert callable(getattr(IOStream, name, None)), f"IOStream.{name} is gone: {RE_MEASURE}"
    with socket.socket() as raw:
        stream = IOStream(raw)
        assert stream.socket is raw, f"IOStream.socket is not the socket: {RE_MEASURE}"
        assert stream.writing() is False


def test_http_headers_can_be_emptied_in_place():
    headers = HTTPHeaders({"Host": "example", "Cookie": "x" * 100})
    headers.__init__()  # what forget_request does
    assert dict(headers) == {} and list(headers.get_all()) == [], RE_MEASURE


async def test_an_open_socket_uses_a_plain_iostream_and_the_pushed_frames_are_valid(shop):
    client = await websocket_connect(f"ws://127.0.0.1:{shop.port}/cart/status?sku=internet")
    assert '"version":1' in await client.read_message()
    [handler] = shop.services.hub.subscribers()
    # anything else (say an SSLIOStream, or a wrapper) silently takes the slow path
    assert type(handler.ws_connection.stream) is IOStream, RE_MEASURE
    shop.services.hub.push_interval_s = 0  # every change its own frame (no coalescing)
    for version in range(2, 12):  # frames written by send_frame, read by Tornado's client
        shop.services.hub.apply(Snapshot("internet", 9, version, "e1"))
    received = [await asyncio.wait_for(client.read_message(), 5) for _ in range(10)]
    assert [f'"version":{v},' in message for v, message in zip(range(2, 12), received)] == \
        [True] * 10, received
    # and Tornado's own writes (a close frame) still frame correctly after ours
    handler.close(1001, "bye")
    assert await asyncio.wait_for(client.read_message(), 5) is None
    assert client.close_code == 1001


async def test_the_forgotten_request_is_empty_and_the_socket_still_works(shop):
    client = await websocket_connect(f"ws://127.0.0.1:{shop.port}/cart/status?sku=internet")
    await client.read_message()
    [handler] = shop.services.hub.subscribers()
    # open() ran forget_request: the handshake's request is emptied in place
    assert dict(handler.request.headers) == {} and handler.request.arguments == {}
    assert isinstance(handler._headers, HTTPHeaders) and dict(handler._headers) == {}, RE_MEASURE
    assert handler.path_args is None
    forget_request(handler)  # idempotent
    client.write_message("hello")  # read and ignored, as before
    shop.services.hub.apply(Snapshot("internet", 8, 2, "e1"))
    assert '"version":2' in await asyncio.wait_for(client.read_message(), 5)
    client.close()


async def test_compression_is_never_negotiated(shop):
    # every socket is sent the same uncompressed bytes: a client that offers
    # permessage-deflate must get a plain socket, or our frames would be invalid for it
    reader, writer = await asyncio.open_connection("127.0.0.1", shop.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET /cart/status?sku=internet HTTP/1.1\r\nHost: 127.0.0.1:{shop.port}\r\n"
                  f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n"
                  "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
                  "\r\n").encode())
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).decode().lower()
    assert head.startswith("http/1.1 101")
    assert "sec-websocket-extensions" not in head
    writer.close()
