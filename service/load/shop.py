"""What the load tool asks the shop directly, before and after the load (plain HTTP,
no Locust): is it there, the latest version of every book, the sessions' carts, and the
release of the holds the run took."""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import re
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlencode, urlsplit

from service.load.addresses import is_loopback_host, next_address
from service.load.judge import ShopState
from service.load.records import ACKED, UNKNOWN

TIMEOUT_S = 10.0
PARALLEL = 16
PAGE = 200  # books per /api/books page (the shop's most)
DEFAULT_HEARTBEAT_S, DEFAULT_LONGPOLL_S = 2.0, 25.0  # BB_HEARTBEAT_S, BB_LONGPOLL_TIMEOUT_S
# The release sends from addresses of its own, as if process 199 of the load (the load
# processes count from 0), one per session: nginx limits cart changes per address.
RELEASE_SOURCES = 199
# A release the shop limits anyway (one address, as to a shop not on loopback) waits the
# shop's Retry-After (at most this long) and tries again, this many times.
RELEASE_ATTEMPTS, RELEASE_MAX_WAIT_S = 30, 10.0


class ShopUnreachable(RuntimeError):
    """The shop did not answer as a shop; the message names the fix."""


def _get(base: str, path: str) -> tuple[Any, dict[str, str]]:
    with urllib.request.urlopen(base + path, timeout=TIMEOUT_S) as reply:
        return json.loads(reply.read()), dict(reply.headers)


def check(base: str) -> int:
    """How many books the shop at `base` lists; ShopUnreachable when it does not answer."""
    try:
        _, headers = _get(base, "/api/books?per_page=1")
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        raise ShopUnreachable(f"the shop at {base} does not answer GET /api/books ({exc}); "
                              "start one with `make demo`, or point --url at a running shop"
                              ) from None
    return int(headers.get("X-Total-Count", "0"))


def page_timing(base: str) -> tuple[float, float]:
    """(heartbeat s, long-poll hold s) the shop tells its pages (data-* of its front page),
    or the shop's defaults when the page does not say."""
    try:
        with urllib.request.urlopen(base + "/", timeout=TIMEOUT_S) as reply:
            page = reply.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError, http.client.HTTPException):
        return DEFAULT_HEARTBEAT_S, DEFAULT_LONGPOLL_S
    found = {name: float(value) for name, value in
             re.findall(r'data-(heartbeat|longpoll)-s="([\d.]+)"', page)}
    return (found.get("heartbeat", DEFAULT_HEARTBEAT_S),
            found.get("longpoll", DEFAULT_LONGPOLL_S))


def all_books(base: str) -> tuple[list[dict[str, Any]], int]:
    """Every book the shop lists (GET /api/books, page after page), and the shop's clock."""
    books: list[dict[str, Any]] = []
    path: str | None = f"/api/books?per_page={PAGE}"
    server_time_ms = 0
    while path:
        rows, headers = _get(base, path)
        server_time_ms = int(headers.get("X-Server-Time", "0"))
        books += rows
        link = headers.get("Link", "")
        path = link[1:link.index(">")] if 'rel="next"' in link else None
    return books, server_time_ms


def state_after(base: str, sessions: list[str]) -> ShopState:
    """The latest (epoch, version) of every book, and what each session still holds."""
    books, server_time_ms = all_books(base)
    latest = {row["sku"]: (row["epoch"], int(row["version"])) for row in books}

    def cart(session: str) -> tuple[str, set[str]]:
        body, _ = _get(base, "/api/cart?" + urlencode({"session": session}))
        return session, {item["sku"] for item in body["items"]}

    with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
        carts = dict(pool.map(cart, sessions))
    return ShopState(latest, carts, server_time_ms)


def _post_form(base: str, path: str, fields: dict[str, str],
               source: str | None) -> tuple[int, str | None]:
    """POST a form from `source` (an address of this machine, or any): (status,
    Retry-After)."""
    target = urlsplit(base)
    kind = http.client.HTTPSConnection if target.scheme == "https" else http.client.HTTPConnection
    connection = kind(target.hostname or "127.0.0.1", target.port, timeout=TIMEOUT_S,
                      source_address=(source, 0) if source else None)
    try:
        connection.request("POST", target.path.rstrip("/") + path, body=urlencode(fields),
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
        reply = connection.getresponse()
        reply.read()
        return reply.status, reply.getheader("Retry-After")
    finally:
        connection.close()


def release(base: str, holds: dict[str, dict[str, list[Any]]], carts: dict[str, set[str]],
            bind_sources: bool = True) -> int:
    """Give back every copy the run's sessions may hold; returns how many they held.
    With `bind_sources` and a shop on loopback each session's removes leave from an
    address of their own, as its user's requests did."""
    todo = [(session, sku) for session, books in holds.items()
            for sku, (state, _) in books.items()
            if state in (ACKED, UNKNOWN) or sku in carts.get(session, set())]
    bind = bind_sources and is_loopback_host(urlsplit(base).hostname or "")
    sources = {session: next_address(RELEASE_SOURCES) if bind else None for session in holds}

    def remove(item: tuple[str, str]) -> bool:
        session, sku = item
        fields = {"session": session, "action": "remove", "sku": sku}
        for _ in range(RELEASE_ATTEMPTS):
            try:
                status, retry_after = _post_form(base, "/cart", fields, sources[session])
            except (OSError, http.client.HTTPException):
                return False
            if status != 429:
                return status == 200 and sku in carts.get(session, set())
            # seconds, as the shop sends it (not an HTTP date)
            wait_s = float(retry_after) if retry_after and retry_after.isdigit() else 1.0
            time.sleep(min(RELEASE_MAX_WAIT_S, wait_s))
        return False

    with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
        return sum(pool.map(remove, todo))
