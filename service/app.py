"""The Tornado application: routes and the services every handler shares."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import redis.asyncio as aioredis
import tornado.web
from tornado.routing import PathMatches, Rule

from service import handlers, keys, ops_handlers, rate_handlers
from service.catalog import Catalog
from service.config import Settings
from service.inventory import InventoryStore
from service.live import InventoryFeed, LiveHub
from service.metrics import Metrics
from service.search_cache import SearchCache
from service.sockets import StatusSocketHandler

ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass
class Services:
    """Everything a handler needs; one per process."""
    settings: Settings
    catalog: Catalog
    redis: aioredis.Redis
    store: InventoryStore
    hub: LiveHub
    feed: InventoryFeed
    draining: bool = False
    inflight: int = 0
    search: SearchCache | None = None  # tweets per second; None in tests that need no search
    metrics: Metrics = dataclasses.field(default_factory=Metrics)

    def __post_init__(self):
        self.metrics.bind(self)


class WebSocketUpgradeMatches(PathMatches):
    """Matches the path only for a WebSocket upgrade, so one URL serves both transports."""

    def match(self, request):
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return None
        return super().match(request)


def make_app(services: Services) -> tornado.web.Application:
    routes = [
        Rule(WebSocketUpgradeMatches(r"/cart/status"), StatusSocketHandler),
        (r"/cart/status", handlers.StatusPollHandler),
        (r"/cart", handlers.CartHandler),
        (r"/", handlers.BookPageHandler),
        (r"/books", handlers.CatalogPageHandler),
        (r"/books/([^/]+)", handlers.BookPageHandler),
        (r"/api/books", handlers.BooksApiHandler),
        (r"/healthz", handlers.HealthHandler),
        (r"/readyz", handlers.ReadyHandler),
        (r"/metrics", ops_handlers.MetricsHandler),
        (r"/admin/cluster", ops_handlers.ClusterPageHandler),
        (r"/admin/cluster\.json", ops_handlers.ClusterApiHandler),
        (r"/rate", rate_handlers.RatePageHandler),
        (r"/api/rate", rate_handlers.RateApiHandler),
    ]
    if services.settings.demo_blocking:  # `serve --demo-blocking` only, for make bench-seed
        routes.append((r"/rate/blocking", rate_handlers.BlockingRateHandler))
    return tornado.web.Application(
        routes,
        services=services,
        template_path=str(ROOT / "templates"),
        static_path=str(ROOT / "static"),
        default_handler_class=handlers.NotFoundHandler,
        websocket_max_message_size=keys.MAX_WS_MESSAGE_BYTES,
        # keep-alive pings come from one task per process (sockets.ping_sockets),
        # not from a timer per socket
        websocket_ping_interval=0,
        log_function=handlers.access_logger(services.settings.trusted_proxies),
    )
