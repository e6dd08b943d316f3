"""HTTP handlers: pages, the cart API, the status long-poll, health.

Every handler answers bad input with a clear error and changes nothing; JSON errors
look like {"error": code, "message": text}.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import random
from http import HTTPStatus

import tornado.web
from redis.exceptions import RedisError

from service import keys, sessions
from service.inventory import SoldOut, UnknownSku
from service.live import Entry

log = logging.getLogger(__name__)


class ApiError(tornado.web.HTTPError):
    """An error with a stable machine-readable code and a message for people."""

    def __init__(self, status: int, code: str, message: str, **extra):
        super().__init__(status, log_message=message)
        self.code = code
        self.message = message
        self.extra = extra


def parse_cursors(raw: str | None, count: int) -> list[tuple[str | None, int]] | None:
    """Parse `since`: one `epoch:version` (or bare `version`) per SKU, comma-separated."""
    if raw is None:
        return None
    tokens = raw.split(",")
    if len(tokens) != count:
        raise ApiError(400, "bad_since", f"since has {len(tokens)} cursor(s) for {count} SKU(s); "
                       "give one epoch:version per sku, comma-separated, in the same order")
    cursors = []
    for token in tokens:
        epoch, _, version = token.rpartition(":")
        if not version.isdigit() or len(version) > 15 or len(epoch) > 64:
            raise ApiError(400, "bad_since", f"bad cursor {token[:80]!r}: expected epoch:version "
                           "(e.g. 3f2a9c1d:17) or a bare version number")
        cursors.append((epoch or None, int(version)))
    return cursors


def is_ahead_of(entry: Entry, cursor: tuple[str | None, int]) -> bool:
    """Whether the client holding `cursor` has not seen `entry` yet."""
    epoch, version = cursor
    snapshot = entry.snapshot
    return (epoch is not None and epoch != snapshot.epoch) or snapshot.version > version


def client_ip(request, trusted_networks) -> str:
    """The client's address: the proxy's X-Real-IP / X-Forwarded-For only if the peer is
    a trusted proxy (BB_TRUSTED_PROXIES); anyone else could write any address there."""
    peer = request.remote_ip
    try:
        trusted = any(ipaddress.ip_address(peer) in network for network in trusted_networks)
    except ValueError:
        return peer
    if not trusted:
        return peer
    forwarded = request.headers.get("X-Real-IP") or \
        request.headers.get("X-Forwarded-For", "").split(",")[-1].strip()
    return forwarded or peer


def access_logger(trusted_proxies):
    """Tornado's log_function: one line per request with the client's real address."""
    networks = [ipaddress.ip_network(n) for n in trusted_proxies]
    access_log = logging.getLogger("tornado.access")

    def log_request(handler) -> None:
        status = handler.get_status()
        level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
        request = handler.request
        access_log.log(level, "%d %s %s (%s) %.1fms", status, request.method, request.uri,
                       client_ip(request, networks), 1000 * request.request_time())
    return log_request


class ShopMixin:
    """What every handler of ours (HTTP and WebSocket) shares."""

    @property
    def services(self):
        return self.application.settings["services"]

    def set_default_headers(self):
        self.set_header("X-Instance", self.services.settings.instance_id)
        if self.services.draining:
            # a proxy must not send this connection another request
            self.set_header("Connection", "close")

    def requested_skus(self) -> list[str]:
        """The `sku` arguments (repeatable; default: the featured book), validated."""
        catalog = self.services.catalog
        skus = list(dict.fromkeys(self.get_query_arguments("sku"))) or [catalog.featured]
        if len(skus) > keys.MAX_SKUS_PER_REQUEST:
            raise ApiError(400, "too_many_skus",
                           f"at most {keys.MAX_SKUS_PER_REQUEST} sku values per request")
        for sku in skus:
            if sku not in catalog:
                raise ApiError(404, "unknown_sku", f"no book with SKU {sku[:60]!r}")
        return skus

    def current_entries(self, skus: list[str]) -> list[Entry]:
        """Latest snapshots from this process's hub (no Redis call); 503 before the first sync."""
        entries = [self.services.hub.current(sku) for sku in skus]
        if None in entries:
            raise ApiError(503, "not_ready", "this instance has not reached Redis yet; retry shortly")
        return entries

    def wants_html(self) -> bool:
        return self.request.headers.get("Accept", "").startswith("text/html")

    def write_error(self, status_code: int, **kwargs):
        error = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(error, ApiError):
            code, message, extra = error.code, error.message, error.extra
        else:
            code = HTTPStatus(status_code).phrase.lower().replace(" ", "_")
            message, extra = HTTPStatus(status_code).description or code, {}
        self.error_code = code
        if status_code == 503:
            self.set_header("Retry-After", "1")
        if self.wants_html():
            self.render("error.html", status_code=status_code, message=message)
        else:
            self.set_header("Content-Type", "application/json; charset=UTF-8")
            self.finish(json.dumps({"error": code, "message": message, **extra}))


class BaseHandler(ShopMixin, tornado.web.RequestHandler):
    """Plain HTTP handlers: counted while in flight so a drain can wait for them."""

    def prepare(self):
        self.services.inflight += 1
        self._counted = True
        if len(self.request.body) > keys.MAX_BODY_BYTES:
            raise ApiError(413, "too_large", f"request body over {keys.MAX_BODY_BYTES} bytes")

    def on_finish(self):
        if getattr(self, "_counted", False):
            self._counted = False
            self.services.inflight -= 1

    def on_connection_close(self):
        self.on_finish()

    def log_exception(self, typ, value, tb):
        if isinstance(value, RedisError):
            log.warning("Redis unavailable for %s %s: %s", self.request.method, self.request.uri, value)
        else:
            super().log_exception(typ, value, tb)

    def send_error(self, status_code: int = 500, **kwargs):
        error = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(error, RedisError):
            kwargs["exc_info"] = (ApiError, ApiError(503, "unavailable",
                                                     "inventory store unreachable; retry shortly"), None)
            status_code = 503
        super().send_error(status_code, **kwargs)

    def session(self) -> tuple[str, str]:
        """The shopper's (session id, token) from the signed cookie, or a new one."""
        secret = self.services.settings.cookie_secret
        token = self.get_cookie(sessions.SESSION_NAME)
        session_id = sessions.session_id_from(secret, token)
        if session_id is None:
            session_id, token = sessions.new_token(secret)
            self.set_cookie(sessions.SESSION_NAME, token, httponly=True, samesite="Lax",
                            expires_days=keys.SESSION_MAX_AGE_DAYS)
        return session_id, token

    def write_json(self, body: bytes | dict):
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(body if isinstance(body, bytes) else json.dumps(body))


class NotFoundHandler(BaseHandler):
    def prepare(self):
        super().prepare()
        raise ApiError(404, "not_found", f"no such page: {self.request.path[:100]}")


class BookPageHandler(BaseHandler):
    """`/` (the featured book, seed listing 5-5) and `/books/<sku>`."""

    async def get(self, sku: str | None = None):
        catalog = self.services.catalog
        book = catalog.get(sku or catalog.featured)
        if book is None:
            raise ApiError(404, "unknown_sku", f"no book with SKU {sku[:60]!r}")
        session_id, token = self.session()
        snapshot = await self.services.store.snapshot(book.sku)
        in_cart = await self.services.store.in_cart(book.sku, session_id)
        self.services.hub.apply(snapshot)
        self.set_header("Cache-Control", "no-store")
        self.render("book.html", book=book, snapshot=snapshot, session=token, in_cart=in_cart,
                    instance=self.services.settings.instance_id, count=snapshot.count)


class CatalogPageHandler(BaseHandler):
    async def get(self):
        _, token = self.session()
        snapshots = await self.services.store.snapshots(self.services.catalog.skus)
        self.set_header("Cache-Control", "no-store")
        self.render("books.html", items=list(zip(self.services.catalog.books, snapshots)),
                    session=token, instance=self.services.settings.instance_id)


class BooksApiHandler(BaseHandler):
    async def get(self):
        snapshots = await self.services.store.snapshots(self.services.catalog.skus)
        self.write_json(json.dumps([
            {"sku": b.sku, "title": b.title, "author": b.author, "price": b.price,
             "inventoryCount": s.count, "version": s.version, "epoch": s.epoch}
            for b, s in zip(self.services.catalog.books, snapshots)]).encode())


class CartHandler(BaseHandler):
    """POST /cart: form fields or JSON `session`, `action` (add|remove), optional `sku`."""

    action = "none"  # for the metrics: add, remove, or none when it was not valid

    def on_finish(self):
        if getattr(self, "_counted", False):  # once, though a closed connection calls it too
            result = "ok" if self.get_status() < 400 else getattr(self, "error_code", "error")
            self.services.metrics.cart_operations.labels(self.action, result).inc()
        super().on_finish()

    async def post(self):
        if sessions.is_cross_site(self.request.headers, self.request.host):
            raise ApiError(403, "cross_site", "cross-site requests may not change a cart")
        fields = self._fields()
        token = fields.get("session")
        if not token:
            raise ApiError(400, "missing_session", "the session field is required "
                           "(it is in the page's hidden #session field)")
        session_id = sessions.session_id_from(self.services.settings.cookie_secret, token)
        if session_id is None:
            raise ApiError(403, "bad_session", "the session is not one this shop issued; reload the page")
        action = fields.get("action")
        if action not in ("add", "remove"):
            raise ApiError(400, "bad_action", "action must be 'add' or 'remove'")
        self.action = action
        sku = fields.get("sku") or self.services.catalog.featured
        next_path = fields.get("next")
        if next_path is not None and not (next_path.startswith("/") and not next_path.startswith("//")):
            raise ApiError(400, "bad_next", "next must be a path on this site, like /books/internet")
        store = self.services.store
        try:
            result = await (store.add(sku, session_id) if action == "add"
                            else store.remove(sku, session_id))
        except UnknownSku:
            raise ApiError(404, "unknown_sku", f"no book with SKU {sku[:60]!r}") from None
        except SoldOut as sold_out:
            self.services.hub.apply(sold_out.snapshot)
            raise ApiError(409, "sold_out", "Sorry, the last copy just went to another shopper.",
                           **sold_out.snapshot.as_dict(), inCart=False) from None
        # the pub/sub message will bring the same snapshot; applying it now only makes
        # this instance's own clients see it a little sooner
        self.services.hub.apply(result.snapshot)
        if next_path is not None:
            self.redirect(next_path, status=303)
            return
        self.write_json({**result.snapshot.as_dict(), "inCart": result.in_cart})

    def _fields(self) -> dict[str, str]:
        content_type = self.request.headers.get("Content-Type", "")
        if content_type.startswith("application/json"):
            try:
                body = json.loads(self.request.body or b"null")
            except ValueError:
                raise ApiError(400, "bad_json", "the body is not valid JSON") from None
            if not isinstance(body, dict) or not all(isinstance(v, str) for v in body.values()):
                raise ApiError(400, "bad_json", "the JSON body must be an object of strings")
            return body
        return {name: self.get_body_argument(name) for name in ("session", "action", "sku", "next")
                if self.get_body_argument(name, None) is not None}


class StatusPollHandler(BaseHandler):
    """GET /cart/status: the long-poll of seed listing 5-4, with a `since` cursor.

    Answers at once when a SKU is newer than its cursor; otherwise parks on the local hub
    (no Redis call) until a change or the jittered hold time, then answers the current
    snapshot with 200, as the seed's client re-polls after every answer.
    """

    _waiter: asyncio.Future | None = None

    async def get(self):
        skus = self.requested_skus()
        cursors = parse_cursors(self.get_query_argument("since", None), len(skus))
        entries = self.current_entries(skus)
        seen_all = cursors is None or not any(map(is_ahead_of, entries, cursors))
        if seen_all and not self.services.draining:
            self._waiter = self.services.hub.wait(skus)
            # jitter, so clients parked together do not all time out together
            hold_s = self.services.settings.longpoll_timeout_s * random.uniform(0.85, 1.0)
            await asyncio.wait([self._waiter], timeout=hold_s)
            if self._waiter.cancelled():  # the client went away
                return
            self._waiter.cancel()
            entries = self.current_entries(skus)
        if len(entries) == 1:
            self.write_json(entries[0].payload)
        else:
            instance = json.dumps(self.services.settings.instance_id).encode()
            self.write_json(b'{"books":[' + b",".join(e.payload for e in entries) +
                            b'],"instance":' + instance + b"}")

    def on_connection_close(self):
        if self._waiter is not None:
            self._waiter.cancel()
        super().on_connection_close()


class HealthHandler(BaseHandler):
    def get(self):
        self.write_json({"status": "alive", "instance": self.services.settings.instance_id})


class ReadyHandler(BaseHandler):
    """503 unless Redis answers, the subscription is live and the instance is not draining."""

    async def get(self):
        services = self.services
        problems = []
        if services.draining:
            problems.append("draining")
        if not services.feed.subscribed.is_set():
            problems.append("not subscribed to inventory changes")
        try:
            await asyncio.wait_for(services.redis.ping(), timeout=1.0)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            problems.append(f"Redis unreachable ({type(exc).__name__})")
        self.set_status(503 if problems else 200)
        self.write_json({"ready": not problems, "problems": problems,
                         "instance": services.settings.instance_id})
