"""The /rate handlers in this process (fakeredis, a fake upstream): what they answer when
Redis is down, when the upstream cannot take the query, and when search is not set up.
The real-process behaviour is in tests/integration/test_search.py."""

from __future__ import annotations

import json
import time

import pytest
from tornado.httpclient import AsyncHTTPClient

from service.search import QueryNotSupported, SearchResult

pytestmark = pytest.mark.timeout(20)


class Upstream:
    def check_query(self, query: str) -> None:
        if " " in query:
            raise QueryNotSupported("one hashtag, please")

    async def search(self, query: str) -> SearchResult:
        now = time.time()
        return SearchResult(query, 10, now - 5, now, 0.01, 2.0)

    async def aclose(self) -> None:
        pass


@pytest.fixture
async def app(start_app):
    running = await start_app(search_source=Upstream())
    client = AsyncHTTPClient(force_instance=True)

    async def get(path: str, accept: str = "application/json"):
        return await client.fetch(running.base + path, headers={"Accept": accept},
                                  raise_error=False)
    yield running.services, running.redis_server, get
    client.close()


async def test_redis_down_is_503_for_json_and_page(app):
    _, server, get = app
    server.connected = False
    reply = await get("/api/rate?q=pants")
    assert reply.code == 503 and json.loads(reply.body)["error"] == "unavailable"
    assert reply.headers["X-Instance"] == "unit"
    page = await get("/rate?q=pants", accept="text/html")
    assert page.code == 503 and b"search cache is unreachable" in page.body


async def test_a_hot_query_is_still_served_while_redis_blips(app):
    _, server, get = app
    assert json.loads((await get("/api/rate?q=pants")).body)["cache"] == "miss"
    server.connected = False  # the near cache answers without Redis for a moment
    reply = await get("/api/rate?q=pants")
    assert reply.code == 200 and json.loads(reply.body)["cache"] == "hit"


async def test_query_the_upstream_cannot_take_is_400(app):
    _, _, get = app
    reply = await get("/api/rate?q=two%20words")
    assert reply.code == 400 and json.loads(reply.body)["error"] == "bad_query"


async def test_page_shows_the_rate_like_the_seed(app):
    _, _, get = app
    page = await get("/rate?q=pants", accept="text/html")
    assert page.code == 200 and page.headers["Content-Type"].startswith("text/html")
    body = page.body.decode()
    assert '<div class="rate-query">pants</div>' in body
    assert '<div class="rate-number">2.00</div>' in body and "tweets per second" in body
    again = (await get("/rate?q=pants", accept="text/html")).body.decode()
    assert "from the shared cache" in again


async def test_without_search_set_up_it_is_503(app):
    services, _, get = app
    services.search = None
    reply = await get("/api/rate?q=pants")
    assert reply.code == 503


async def test_blocking_route_needs_the_flag(app):
    _, _, get = app
    assert (await get("/rate/blocking?q=pants")).code == 404
