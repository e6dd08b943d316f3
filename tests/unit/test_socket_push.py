"""WebSocket pushes: a slow reader gets only the newest snapshot; keep-alive pings find dead peers.

A real Tornado server in this process, a raw TCP client that connects by WebSocket and
then does not read while the hub publishes thousands of versions.
"""

import asyncio
import base64
import json
import os
import socket

import pytest

from service.inventory import Snapshot
from service.web.sockets import SILENT_PEER_TIMEOUT_S, ping_sockets, send_heartbeats

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def server(start_app):
    app = await start_app()
    for sku in app.services.catalog.skus:
        app.services.hub.apply(Snapshot(sku, 10, 1, "e1"))
    return app.services, app.port


async def open_raw_websocket(port: int, query: str = ""):
    sock = socket.socket()
    # a small receive window, set before connecting so TCP advertises it from the start
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET /cart/status?sku=internet{query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                  f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    status = await reader.readuntil(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 101")
    return reader, writer


async def read_frames(reader, until_version):
    messages = []
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
    [opening] = await read_frames(reader, 1)
    assert opening["inventoryCount"] == 10

    [handler] = services.hub.subscribers()
    stream = handler.ws_connection.stream
    # and a small send buffer on the server's side: the kernel holds little, so the
    # server's own buffering (or its conflation) is what this test sees
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    versions = 20_000
    largest_buffer = 0
    for version in range(2, versions + 2):
        services.hub.apply(Snapshot("internet", version % 10, version, "e1"))
        largest_buffer = max(largest_buffer, len(stream._write_buffer))
        if version % 500 == 0:
            await asyncio.sleep(0)  # let the loop try to write
    # without conflation 20,000 frames (~1.7 MB) would sit in Tornado's buffer
    assert largest_buffer < 200_000

    messages = await asyncio.wait_for(read_frames(reader, versions + 1), 10)
    assert messages[-1]["version"] == versions + 1
    assert len(messages) < versions  # the middle was conflated away
    seen = [m["version"] for m in messages]
    assert seen == sorted(seen)  # and never an older version after a newer one
    writer.close()


async def read_raw_frame(reader) -> tuple[int, bytes]:
    header = await reader.readexactly(2)
    return header[0], await reader.readexactly(header[1] & 0x7F)


async def test_keepalive_pings_answering_sockets_and_closes_silent_ones(server):
    services, port = server
    reader, writer = await open_raw_websocket(port)
    await read_frames(reader, 1)
    [handler] = services.hub.subscribers()
    start = handler.last_heard

    assert ping_sockets(services.hub, now_s=start + 1) == 0
    assert await asyncio.wait_for(read_raw_frame(reader), 5) == (0x89, b"")  # a ping
    writer.write(b"\x8a\x80" + os.urandom(4))  # the client's (masked, empty) pong
    await writer.drain()
    for _ in range(100):
        if handler.last_heard > start:
            break
        await asyncio.sleep(0.01)
    assert handler.last_heard > start

    # long after the last pong: the peer counts as gone and is closed with 1001
    assert ping_sockets(services.hub, now_s=handler.last_heard + SILENT_PEER_TIMEOUT_S + 1) == 1
    opcode, body = await asyncio.wait_for(read_raw_frame(reader), 5)
    assert opcode == 0x88 and int.from_bytes(body[:2], "big") == 1001
    writer.close()


async def test_heartbeats_go_only_to_sockets_that_asked_for_them(server):
    services, port = server
    plain, plain_writer = await open_raw_websocket(port)  # (the writers keep them open)
    asking, asking_writer = await open_raw_websocket(port, "&heartbeat=1")
    await read_frames(plain, 1)
    await read_frames(asking, 1)
    send_heartbeats(services.hub, 1234)
    opcode, body = await asyncio.wait_for(read_raw_frame(asking), 5)
    assert (opcode, json.loads(body)) == (0x81, {"type": "heartbeat", "serverTime": 1234})
    # the seed's clients (no ?heartbeat=1) get snapshots only: the next frame is one
    services.hub.apply(Snapshot("internet", 3, 2, "e1"))
    opcode, body = await asyncio.wait_for(read_raw_frame(plain), 5)
    assert json.loads(body)["version"] == 2
    plain_writer.close()
    asking_writer.close()
