"""The drain waits on CountingHTTPServer's count of open HTTP connections, kept through
Tornado's public hooks (handle_stream, on_close) rather than its private set."""

import asyncio

import pytest
import tornado.web
from tornado.netutil import bind_sockets

from service.instance.server import CountingHTTPServer

pytestmark = pytest.mark.timeout(10)


class Hello(tornado.web.RequestHandler):
    def get(self):
        self.write("hello")


async def count_becomes(server: CountingHTTPServer, expected: int) -> None:
    async with asyncio.timeout(5):
        # the count has no event of its own to wait on: poll it, bounded by the timeout
        while server.open_connections != expected:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_open_connections_counts_kept_alive_connections_until_they_close():
    server = CountingHTTPServer(tornado.web.Application([(r"/", Hello)]))
    sockets = bind_sockets(0, "127.0.0.1")
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
    for reader, writer in connections:  # one request each, then kept alive
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await reader.readuntil(b"hello")).startswith(b"HTTP/1.1 200")
    await count_becomes(server, 3)
    connections[0][1].close()
    await count_becomes(server, 2)
    await server.close_all_connections()
    assert server.open_connections == 0
    server.stop()
