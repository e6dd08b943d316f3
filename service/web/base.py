"""What every handler of ours shares: the services, the error protocol, sessions, JSON."""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from types import TracebackType
from typing import TYPE_CHECKING, Any

import tornado.web
from redis.exceptions import RedisError

from service.live import Entry
from service.web import limits, sessions
from service.web.errors import ApiError, redis_unavailable, unknown_sku
from service.web.page_assets import SHOP_MODULES, import_map_and_policy
from service.web.proxy import client_ip, networks_of, peer_is_trusted, redacted
from service.web.services import Services

log = logging.getLogger(__name__)

# on every answer: no sniffing of types, no framing by other sites, no full URLs to others
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


if TYPE_CHECKING:
    # the mixin always sits beside a RequestHandler (or a WebSocketHandler, which is one)
    _Handler = tornado.web.RequestHandler
else:
    _Handler = object


class ShopMixin(_Handler):
    """What every handler of ours (HTTP and WebSocket) shares."""

    @property
    def services(self) -> Services:
        services: Services = self.application.settings["services"]
        return services

    def set_default_headers(self) -> None:
        self.clear_header("Server")  # which server and version is nobody's business
        for name, value in SECURITY_HEADERS.items():
            self.set_header(name, value)
        _, policy = import_map_and_policy(self.static_url)
        self.set_header("Content-Security-Policy", policy)
        self.set_header("X-Instance", self.services.config.instance_id)
        # the Redis clock (as this instance estimates it), which changedAt is on
        self.set_header("X-Server-Time", self.services.store.clock.now_ms())
        if self.services.draining:
            # a proxy must not send this connection another request
            self.set_header("Connection", "close")

    def requested_skus(self) -> list[str]:
        """The `sku` arguments (repeatable; default: the featured book), validated."""
        catalog = self.services.catalog
        skus = list(dict.fromkeys(self.get_query_arguments("sku"))) or [catalog.featured]
        if len(skus) > limits.MAX_SKUS_PER_REQUEST:
            raise ApiError(400, "too_many_skus",
                           f"at most {limits.MAX_SKUS_PER_REQUEST} sku values per request")
        for sku in skus:
            if sku not in catalog:
                raise unknown_sku(sku)
        return skus

    def current_entries(self, skus: list[str] | tuple[str, ...]) -> list[Entry]:
        """Latest snapshots from this process's hub (no Redis call); 503 before the first sync."""
        entries = []
        for sku in skus:
            entry = self.services.hub.current(sku)
            if entry is None:
                raise ApiError(503, "not_ready",
                               "this instance has not reached Redis yet; retry shortly")
            entries.append(entry)
        return entries

    async def catch_up(self, skus: list[str]) -> None:
        """This instance is behind a client on these books (the client saw newer versions
        through another instance; this one's subscription lags, or was just lost): read
        them from Redis, the truth, and take them (the hub pushes what is newer)."""
        for snapshot in await self.services.store.snapshots(skus):
            self.services.hub.apply(snapshot)

    def wants_html(self) -> bool:
        return self.request.headers.get("Accept", "").startswith("text/html")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None, None))[1]
        code = HTTPStatus(status_code).phrase.lower().replace(" ", "_")
        message, extra = HTTPStatus(status_code).description or code, {}
        if isinstance(error, ApiError):
            code, message, extra = error.code, error.message, error.extra
        elif isinstance(error, tornado.web.HTTPError) and error.log_message and status_code < 500:
            # Tornado's own refusals say what was wrong (e.g. "Invalid unicode in sku")
            message = error.log_message % error.args if error.args else error.log_message
        self.error_code = code
        if isinstance(error, ApiError) and error.retry_after_s is not None:
            self.set_header("Retry-After", str(error.retry_after_s))
        elif status_code == 503:
            self.set_header("Retry-After", "1")
        if self.wants_html():
            self.render("error.html", status_code=status_code, message=message)
        else:
            self.set_header("Content-Type", "application/json; charset=UTF-8")
            self.finish(json.dumps({"error": code, "message": message, **extra}))


class BaseHandler(ShopMixin, tornado.web.RequestHandler):
    """Plain HTTP handlers: counted while in flight so a drain can wait for them."""

    _counted = False

    def prepare(self) -> None:
        self.services.inflight += 1
        self._counted = True
        if len(self.request.body) > limits.MAX_BODY_BYTES:
            raise ApiError(413, "too_large", f"request body over {limits.MAX_BODY_BYTES} bytes")

    def on_finish(self) -> None:
        if self._counted:
            self._counted = False
            self.services.inflight -= 1

    def on_connection_close(self) -> None:
        self.on_finish()

    def log_exception(self, typ: type[BaseException] | None, value: BaseException | None,
                      tb: TracebackType | None) -> None:
        if isinstance(value, RedisError):
            log.warning("Redis unavailable for %s %s: %s", self.request.method,
                        redacted(self.request.uri or ""), value)
        else:
            super().log_exception(typ, value, tb)

    def _request_summary(self) -> str:
        """Tornado's summary of the request in its warnings, with secrets blanked."""
        uri = redacted(self.request.uri or "")
        return f"{self.request.method} {uri} ({self.request.remote_ip})"

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(error, RedisError):
            kwargs["exc_info"] = (ApiError, redis_unavailable(error), None)
            status_code = 503
        super().send_error(status_code, **kwargs)

    def get_template_namespace(self) -> dict[str, Any]:
        namespace: dict[str, Any] = super().get_template_namespace()
        namespace["import_map"], _ = import_map_and_policy(self.static_url)
        namespace["shop_modules"] = SHOP_MODULES
        return namespace

    def client_address(self) -> str:
        """The client's address: what a trusted proxy saw (BB_TRUSTED_PROXIES), else the peer."""
        return client_ip(self.request, networks_of(self.services.config.trusted_proxies))

    def is_https(self) -> bool:
        """Whether the client reached us over HTTPS: TLS ends at the proxy, which says so in
        X-Forwarded-Proto (believed only from a trusted proxy). Cookies are then Secure."""
        if self.request.protocol == "https":
            return True
        return (self.request.headers.get("X-Forwarded-Proto", "") == "https"
                and peer_is_trusted(self.request,
                                    networks_of(self.services.config.trusted_proxies)))

    def session(self) -> tuple[str, str]:
        """The shopper's (session id, token) from the signed cookie, or a new one."""
        secret = self.services.config.cookie_secret
        token = self.get_cookie(sessions.SESSION_NAME)
        session_id = sessions.session_id_from(secret, token)
        if session_id is None or token is None:
            session_id, token = sessions.new_token(secret)
            self.set_cookie(sessions.SESSION_NAME, token, httponly=True, samesite="Lax",
                            secure=self.is_https(), expires_days=limits.SESSION_MAX_AGE_DAYS)
        return session_id, token

    def write_json(self, body: bytes | dict[str, Any]) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(body if isinstance(body, bytes) else json.dumps(body))


class NotFoundHandler(BaseHandler):
    def prepare(self) -> None:
        super().prepare()
        raise ApiError(404, "not_found", f"no such page: {self.request.path[:100]}")
