"""Server-issued, signed shopper sessions and the same-origin check for changes.

The session token is a Tornado signed value around a random id: the cookie and the
page's hidden field carry the same token, so the seed's jQuery client (which posts the
hidden field) keeps working, and nobody can release or hoard with a made-up session.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from urllib.parse import urlparse

from tornado.web import create_signed_value, decode_signed_value

from service.web.limits import SESSION_MAX_AGE_DAYS

SESSION_NAME = "bb_session"


def new_token(secret: str) -> tuple[str, str]:
    """A fresh (session id, signed token) pair."""
    session_id = uuid.uuid4().hex
    return session_id, create_signed_value(secret, SESSION_NAME, session_id).decode()


def session_id_from(secret: str, token: str | None) -> str | None:
    """The session id inside a token, or None when it is missing, forged or expired."""
    if not token:
        return None
    value = decode_signed_value(secret, SESSION_NAME, token, max_age_days=SESSION_MAX_AGE_DAYS)
    return value.decode() if value else None


def is_cross_site(headers: Mapping[str, str], host: str) -> bool:
    """True when a browser says the request comes from another site.

    The seed's jQuery client sends no XSRF token, so instead of one we refuse what the
    browser marks as cross-site: `Sec-Fetch-Site: cross-site`, or an `Origin` whose
    host:port is not the host the request was sent to. Non-browser clients send neither.
    """
    if headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
        return True
    origin = headers.get("Origin")
    if origin is None:
        return False
    return not is_same_origin(origin, host)


def is_same_origin(origin: str, host: str) -> bool:
    """Whether an `Origin` header names exactly `host` (host:port)."""
    return origin_host(origin) == host.lower()


def origin_host(origin: str) -> str | None:
    """The host:port an `Origin` header names, lowercased; None when it names none: "null",
    or no URL at all ("http://[", which urlparse refuses with ValueError)."""
    try:
        return urlparse(origin).netloc.lower() or None
    except ValueError:
        return None
