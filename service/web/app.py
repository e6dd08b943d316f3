"""The Tornado application: every route, and the settings Tornado runs it with."""

from __future__ import annotations

from typing import Any

import tornado.httputil
import tornado.web
from tornado.routing import PathMatches, Rule

from service.paths import STATIC, TEMPLATES
from service.web import limits
from service.web.admin import (
    AdminLoginHandler,
    InstancesApiHandler,
    InstancesPageHandler,
    MetricsHandler,
)
from service.web.base import NotFoundHandler
from service.web.cart import CartApiHandler, CartHandler
from service.web.health import HealthHandler, ReadyHandler
from service.web.openapi import OpenApiHandler
from service.web.pages import BookPageHandler, BooksApiHandler, CatalogPageHandler
from service.web.proxy import access_logger
from service.web.services import Services
from service.web.sockets import StatusSocketHandler
from service.web.status import StatusPollHandler
from service.web.tweet_rate import BlockingRateHandler, RateApiHandler, RatePageHandler


class WebSocketUpgradeMatches(PathMatches):
    """Matches the path only for a WebSocket upgrade, so one URL serves both transports."""

    def match(self, request: tornado.httputil.HTTPServerRequest) -> dict[str, Any] | None:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return None
        return super().match(request)


def make_app(services: Services) -> tornado.web.Application:
    """The application of one instance, its handlers sharing `services`."""
    routes: list[Any] = [
        Rule(WebSocketUpgradeMatches(r"/cart/status"), StatusSocketHandler),
        (r"/cart/status", StatusPollHandler),
        (r"/cart", CartHandler),
        (r"/", BookPageHandler),
        (r"/books", CatalogPageHandler),
        (r"/books/([^/]+)", BookPageHandler),
        (r"/api/books", BooksApiHandler),
        (r"/api/cart", CartApiHandler),
        (r"/api/openapi\.json", OpenApiHandler),
        (r"/healthz", HealthHandler),
        (r"/readyz", ReadyHandler),
        (r"/metrics", MetricsHandler),
        (r"/admin/login", AdminLoginHandler),
        (r"/admin/cluster", InstancesPageHandler),
        (r"/admin/cluster\.json", InstancesApiHandler),
        (r"/rate", RatePageHandler),
        (r"/api/rate", RateApiHandler),
    ]
    if services.config.demo_blocking:  # `serve --demo-blocking` only, for make bench-seed
        routes.append((r"/rate/blocking", BlockingRateHandler))
    return tornado.web.Application(
        routes,
        services=services,
        template_path=str(TEMPLATES),
        static_path=str(STATIC),
        default_handler_class=NotFoundHandler,
        websocket_max_message_size=limits.MAX_WS_MESSAGE_BYTES,
        # keep-alive pings come from one task per process (sockets.ping_sockets),
        # not from a timer per socket
        websocket_ping_interval=0,
        log_function=access_logger(services.config.trusted_proxies),
    )
