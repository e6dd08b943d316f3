"""A socket that stops reading gets only the newest snapshot, never an unbounded queue.

A real Tornado server in this process, a raw TCP client that connects by WebSocket and
then does not read while the hub publishes thousands of versions.
"""

import asyncio
import base64
import json
import os
import socket

import fakeredis
import pytest
from tornado.httpserver import HTTPServer

from service.app import Services, make_app
from service.catalog import Catalog
from service.config import Settings
from service.inventory import InventoryStore, Snapshot
from service.live import InventoryFeed, LiveHub

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def server():
    settings = Settings.from_env({"BB_COOKIE_SECRET": "x" * 32, "BB_INSTANCE_ID": "unit"})
    catalog = Catalog.load(settings.catalog_path)
    redis = fakeredis.FakeAsyncRedis()
    store = InventoryStore(redis, catalog, settings.hold_ttl_s)
    hub = LiveHub("unit")
    services = Services(settings, catalog, redis, store, hub, InventoryFeed(redis, store, hub))
    for sku in catalog.skus:
        hub.apply(Snapshot(sku, 10, 1, "e1"))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    listener.setblocking(False)
    http = HTTPServer(make_app(services))
    http.add_sockets([listener])
    yield services, listener.getsockname()[1]
    http.stop()
    await redis.aclose()


async def open_raw_websocket(port: int):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET /cart/status?sku=internet HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                  f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    status = await reader.readuntil(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 101")
    return reader, writer


async def read_frames(reader, until_version):
    messages = []
    await read_frames_into(reader, until_version, messages)
    return messages


async def read_frames_into(reader, until_version, messages):
    while not messages or messages[-1]["version"] < until_version:
        header = await reader.readexactly(2)
        size = header[1] & 0x7F
        if size == 126:
            size = int.from_bytes(await reader.readexactly(2), "big")
        messages.append(json.loads(await reader.readexactly(size)))
    return messages


async def test_slow_reader_gets_the_newest_snapshot_and_bounded_buffering(server):
    services, port = server
    reader, writer = await open_raw_websocket(port)
    # shrink the client's receive window so the server's kernel buffer fills quickly
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    [opening] = await read_frames(reader, 1)
    assert opening["inventoryCount"] == 10

    [handler] = services.hub.subscribers()
    stream = handler.ws_connection.stream
    versions = 20_000
    largest_buffer = 0
    for version in range(2, versions + 2):
        services.hub.apply(Snapshot("internet", version % 10, version, "e1"))
        largest_buffer = max(largest_buffer, len(stream._write_buffer))
        if version % 500 == 0:
            await asyncio.sleep(0)  # let the loop try to write
    # without conflation 20,000 frames (~1.7 MB) would sit in Tornado's buffer
    assert largest_buffer < 200_000

    messages = []
    try:
        await asyncio.wait_for(read_frames_into(reader, versions + 1, messages), 10)
    finally:
        print('DEBUG', len(messages), messages[-1:], handler._pending and list(handler._pending), stream.writing(), len(stream._write_buffer))
    assert messages[-1]["version"] == versions + 1
    assert len(messages) < versions  # the middle was conflated away
    seen = [m["version"] for m in messages]
    assert seen == sorted(seen)  # and never an older version after a newer one
    writer.close()
