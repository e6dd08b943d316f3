"""The client's real address behind a trusted proxy, and the access log that shows it."""

from __future__ import annotations

import functools
import ipaddress
import logging
import re
from collections.abc import Callable, Iterable

import tornado.httputil
import tornado.web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def peer_is_trusted(request: tornado.httputil.HTTPServerRequest,
                    trusted_networks: Iterable[Network]) -> bool:
    """Whether the connection comes from a trusted proxy (BB_TRUSTED_PROXIES)."""
    try:
        peer = ipaddress.ip_address(request.remote_ip or "")
    except ValueError:
        return False
    return any(peer in network for network in trusted_networks)


def client_ip(request: tornado.httputil.HTTPServerRequest,
              trusted_networks: Iterable[Network]) -> str:
    """The client's address: the proxy's X-Real-IP / X-Forwarded-For only if the peer is
    a trusted proxy (BB_TRUSTED_PROXIES); anyone else could write any address there."""
    peer = request.remote_ip or ""
    if not peer_is_trusted(request, trusted_networks):
        return peer
    forwarded = request.headers.get("X-Real-IP") or \
        request.headers.get("X-Forwarded-For", "").split(",")[-1].strip()
    return forwarded or peer


@functools.lru_cache(maxsize=8)
def networks_of(trusted_proxies: tuple[str, ...]) -> tuple[Network, ...]:
    """BB_TRUSTED_PROXIES parsed (once per setting)."""
    return tuple(ipaddress.ip_network(n) for n in trusted_proxies)


_SECRET_ARGUMENT = re.compile(r"(?i)([?&](?:token|password)=)[^&#]*")


def redacted(uri: str) -> str:
    """The URI for a log: the value of any `token` or `password` argument blanked (the
    admin pages refuse a token in the URL, and the log must not keep one either)."""
    return _SECRET_ARGUMENT.sub(r"\1[redacted]", uri)


def access_logger(trusted_proxies: Iterable[str]) -> Callable[[tornado.web.RequestHandler], None]:
    """Tornado's log_function: one line per request with the client's real address."""
    networks = networks_of(tuple(trusted_proxies))
    access_log = logging.getLogger("tornado.access")

    def log_request(handler: tornado.web.RequestHandler) -> None:
        status = handler.get_status()
        level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
        request = handler.request
        access_log.log(level, "%d %s %s (%s) %.1fms", status, request.method,
                       redacted(request.uri or ""),
                       client_ip(request, networks), 1000 * request.request_time())
    return log_request
