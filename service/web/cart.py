"""`POST /cart`: hold or release a copy for the shopper's session."""

from __future__ import annotations

import json
import math
import re

from service.inventory import NotConfirmed, SoldOut, TooManyHolds, UnknownSku
from service.web import sessions
from service.web.base import BaseHandler
from service.web.errors import ApiError, unknown_sku

# One leading "/", then neither "/" nor "\" (browsers read both as "//host", another
# site), and no control character (CR/LF would split the Location header).
_SAME_SITE_PATH = re.compile(r"/(?![/\\])[^\x00-\x1f\x7f\\]*")
MAX_NEXT_CHARS = 2000


def is_same_site_path(path: str) -> bool:
    """Whether `next` is a path on this site that a Location header can carry."""
    return (len(path) <= MAX_NEXT_CHARS and _SAME_SITE_PATH.fullmatch(path) is not None
            and _is_unicode(path))  # a lone surrogate cannot be sent in a header


def _is_unicode(text: str) -> bool:
    """Whether the string can be encoded (JSON's \\ud800 escapes decode to lone surrogates,
    which no later step could write out)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def checked_session(secret: str, token: str | None) -> str:
    """The session id inside a token; 400 when there is none, 403 when it is forged."""
    if not token:
        raise ApiError(400, "missing_session", "the session field is required "
                       "(it is in the page's hidden #session field)")
    session_id = sessions.session_id_from(secret, token)
    if session_id is None:
        raise ApiError(403, "bad_session",
                       "the session is not one this shop issued; reload the page")
    return session_id


class CartApiHandler(BaseHandler):
    """GET /api/cart: the calling session's holds, from the `session` parameter or the
    session cookie (signed, as for POST /cart)."""

    async def get(self) -> None:
        token = self.get_query_argument("session", None) or self.get_cookie(sessions.SESSION_NAME)
        session_id = checked_session(self.services.config.cookie_secret, token)
        holds = await self.services.store.holds_of(session_id)
        self.write_json({"session": token,
                         "items": [{"sku": h.sku, "expiresAt": h.expires_at_ms} for h in holds],
                         "serverTime": self.services.store.clock.now_ms()})


class CartHandler(BaseHandler):
    """POST /cart: form fields or JSON `session`, `action` (add|remove), optional `sku`."""

    action = "none"  # for the metrics: add, remove, or none when it was not valid

    def on_finish(self) -> None:
        if self._counted:  # once, though a closed connection calls it too
            result = "ok" if self.get_status() < 400 else getattr(self, "error_code", "error")
            self.services.metrics.cart_operations.labels(self.action, result).inc()
        super().on_finish()

    async def post(self) -> None:
        if sessions.is_cross_site(self.request.headers, self.request.host):
            raise ApiError(403, "cross_site", "cross-site requests may not change a cart")
        fields = self._fields()
        session_id = checked_session(self.services.config.cookie_secret, fields.get("session"))
        action = fields.get("action")
        if action not in ("add", "remove"):
            raise ApiError(400, "bad_action", "action must be 'add' or 'remove'")
        self.action = action
        sku = fields.get("sku") or self.services.catalog.featured
        next_path = fields.get("next")
        if next_path is not None and not is_same_site_path(next_path):
            raise ApiError(400, "bad_next",
                           "next must be a path on this site, like /books/internet")
        store = self.services.store
        address = self.client_address()
        try:
            result = await (store.add(sku, session_id, address) if action == "add"
                            else store.remove(sku, session_id))
        except UnknownSku:
            raise unknown_sku(sku) from None
        except TooManyHolds as limit:
            wait_s = max(1, math.ceil((limit.retry_at_ms - store.clock.now_ms()) / 1000))
            raise ApiError(429, "too_many_holds",
                           f"Carts from your network already hold {limit.cap} books, the most "
                           "we keep for one address at once. Remove a book from a cart (or "
                           "wait for a hold to expire) and try again.",
                           retry_after_s=wait_s) from None
        except NotConfirmed:
            raise ApiError(503, "not_confirmed",
                           "Your change reached the shop but could not yet be confirmed by its "
                           "backup; it may or may not be kept. Send it again: doing so twice "
                           "is safe.", retry_after_s=1) from None
        except SoldOut as sold_out:
            self.services.hub.apply(sold_out.snapshot)
            raise ApiError(409, "sold_out", "Sorry, the last copy just went to another shopper.",
                           **sold_out.snapshot.as_dict(), inCart=False,
                           serverTime=store.clock.now_ms()) from None
        # the pub/sub message will bring the same snapshot; applying it now only makes
        # this instance's own clients see it a little sooner
        self.services.hub.apply(result.snapshot)
        if next_path is not None:
            self.redirect(next_path, status=303)
            return
        self.write_json({**result.snapshot.as_dict(), "inCart": result.in_cart,
                         "serverTime": result.server_time_ms})

    def _fields(self) -> dict[str, str]:
        content_type = self.request.headers.get("Content-Type", "")
        if content_type.startswith("application/json"):
            try:
                body = json.loads(self.request.body or b"null")
            except (ValueError, RecursionError):  # too deep for the parser is not JSON to us
                raise ApiError(400, "bad_json", "the body is not valid JSON") from None
            if not isinstance(body, dict) or not all(isinstance(v, str) for v in body.values()):
                raise ApiError(400, "bad_json", "the JSON body must be an object of strings")
            if not all(_is_unicode(v) for v in body.values()):
                raise ApiError(400, "bad_json", "the JSON body has a string that is not valid "
                               "Unicode (a lone surrogate escape such as \\ud800)")
            return body
        fields = {}
        for name in ("session", "action", "sku", "next"):
            value = self.get_body_argument(name, None)
            if value is not None:
                fields[name] = value
        return fields
