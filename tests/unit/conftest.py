"""The app of one instance in this process, on fakeredis, for unit tests that talk HTTP."""

from __future__ import annotations

import dataclasses

import fakeredis
import pytest
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from service.config import Config
from service.inventory import Catalog, InventoryStore
from service.live import InventoryFeed, LiveHub
from service.search import SearchCache
from service.search.upstream import Source
from service.web.app import make_app
from service.web.services import Services


@dataclasses.dataclass
class RunningApp:
    services: Services
    port: int
    redis_server: fakeredis.FakeServer  # `.connected = False` makes Redis unreachable
    http: HTTPServer

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
async def start_app():
    """A factory: start_app(search_source=None) serves the shop on a free loopback port;
    everything it started is stopped after the test."""
    started: list[RunningApp] = []

    async def start(search_source: Source | None = None, **env: str) -> RunningApp:
        config = Config.from_env({"BB_COOKIE_SECRET": "x" * 32, "BB_INSTANCE_ID": "unit",
                                  **env})
        catalog = Catalog.load(config.catalog_path)
        redis_server = fakeredis.FakeServer()
        redis = fakeredis.FakeAsyncRedis(server=redis_server)
        store = InventoryStore(redis, catalog, config.hold_ttl_s, hold_max_s=config.hold_max_s,
                               max_holds_per_address=config.max_holds_per_address)
        hub = LiveHub(config.instance_id, push_interval_s=config.push_interval_s)
        search = None if search_source is None else SearchCache(
            redis, search_source, fresh_s=30, stale_s=300, upstream_timeout_s=1)
        services = Services(config, catalog, redis, store, hub,
                            InventoryFeed(store.nodes, store, hub), search=search)
        sockets = bind_sockets(0, "127.0.0.1")
        http = HTTPServer(make_app(services))
        http.add_sockets(sockets)
        app = RunningApp(services, sockets[0].getsockname()[1], redis_server, http)
        started.append(app)
        return app

    yield start
    for app in started:
        app.http.stop()
        if app.services.search is not None:
            await app.services.search.aclose()
        await app.services.redis.aclose()
