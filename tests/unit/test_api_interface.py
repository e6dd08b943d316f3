"""The interface the load tool relies on, through the real app on fakeredis: changedAt and
serverTime on every snapshot, GET /api/cart, and /api/books in pages."""

import asyncio
import base64
import hashlib
import json
import re
from urllib.parse import urlencode

import pytest
from tornado.httpclient import AsyncHTTPClient
from tornado.websocket import websocket_connect

from service.live import Entry
from service.web import sessions

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
async def shop(start_app):
    app = await start_app()
    store = app.services.store
    await store.seed()
    for snapshot in await store.snapshots(store.catalog.skus):
        app.services.hub.apply(snapshot)
    client = AsyncHTTPClient(force_instance=True)

    async def call(path, method="GET", body=None, cookie=None):
        headers = {"Cookie": f"{sessions.SESSION_NAME}={cookie}"} if cookie else {}
        reply = await client.fetch(app.base + path, method=method, body=body, headers=headers,
                                   raise_error=False)
        return reply.code, json.loads(reply.body) if reply.body else None, reply.headers

    token = sessions.new_token(app.services.config.cookie_secret)[1]
    yield app, call, token
    client.close()


async def test_a_cart_change_carries_its_time_and_the_servers(shop):
    _, call, token = shop
    code, body, headers = await call("/cart", "POST", urlencode(
        {"session": token, "action": "add", "sku": "redis"}))
    assert code == 200, body
    assert 0 <= body["serverTime"] - body["changedAt"] < 1000
    assert int(headers["X-Server-Time"]) >= body["changedAt"] - 1000
    # the long-poll and the catalog answer the same change, with its time
    code, polled, _ = await call("/cart/status?sku=redis&since=0")
    assert (polled["version"], polled["changedAt"]) == (body["version"], body["changedAt"])
    assert polled["serverTime"] >= polled["changedAt"]
    code, rows, _ = await call("/api/books?sku=redis")
    assert rows[0]["changedAt"] == body["changedAt"]


async def test_api_cart_lists_the_sessions_holds(shop):
    _, call, token = shop
    for sku in ("redis", "async"):
        await call("/cart", "POST", urlencode({"session": token, "action": "add", "sku": sku}))
    code, body, _ = await call("/api/cart?" + urlencode({"session": token}))
    assert code == 200 and body["session"] == token
    assert sorted(item["sku"] for item in body["items"]) == ["async", "redis"]
    assert all(item["expiresAt"] > body["serverTime"] for item in body["items"])
    assert (await call("/api/cart", cookie=token))[1]["items"] == body["items"]  # the cookie
    assert (await call("/api/cart"))[0] == 400
    assert (await call("/api/cart?session=forged"))[0] == 403


async def test_api_books_pages_through_the_catalog(shop):
    app, call, _ = shop
    code, rows, headers = await call("/api/books?per_page=3")
    assert code == 200 and [r["sku"] for r in rows] == list(app.services.catalog.skus[:3])
    assert headers["X-Total-Count"] == "4" and 'rel="next"' in headers["Link"]
    code, rows, headers = await call("/api/books?page=2&per_page=3")
    assert [r["sku"] for r in rows] == ["async"] and "Link" not in headers
    for bad in ("page=0", "per_page=1001", "page=x", "per_page=%C2%B2"):
        assert (await call(f"/api/books?{bad}"))[0] == 400, bad


async def test_a_sockets_opening_frame_is_stamped_when_it_is_sent(shop):
    app, _, _ = shop
    entry: Entry = app.services.hub.current("internet")
    frame = entry.frame_at(123)
    header = 4 if frame[1] == 126 else 2  # a 16-bit length follows 126
    assert json.loads(frame[header:])["serverTime"] == 123


async def test_a_long_poll_never_answers_older_than_its_cursor(start_app):
    app = await start_app(BB_LONGPOLL_TIMEOUT_S="0.3")
    store, hub = app.services.store, app.services.hub
    await store.seed()
    for snapshot in await store.snapshots(store.catalog.skus):
        hub.apply(snapshot)
    old = hub.current("internet").snapshot
    # a change this instance's hub has not heard of (its subscription lags): the client
    # saw the new version through another instance
    new = await store.set_stock("internet", 9)
    assert hub.current("internet").snapshot == old
    client = AsyncHTTPClient(force_instance=True)
    try:
        reply = await client.fetch(f"{app.base}/cart/status?sku=internet"
                                   f"&since={new.epoch}:{new.version}", raise_error=False)
        body = json.loads(reply.body)
        assert reply.code == 200 and body["version"] == new.version, body  # not the old one
        assert hub.current("internet").snapshot.version == new.version  # and it caught up
        # a cursor ahead of Redis itself (made up): no older answer, a 503 to retry
        reply = await client.fetch(f"{app.base}/cart/status?sku=internet"
                                   f"&since={new.epoch}:{new.version + 5}", raise_error=False)
        assert reply.code == 503 and json.loads(reply.body)["error"] == "behind"
    finally:
        client.close()


async def test_a_reopened_socket_never_starts_older_than_its_cursor(start_app):
    app = await start_app()
    store, hub = app.services.store, app.services.hub
    await store.seed()
    for snapshot in await store.snapshots(store.catalog.skus):
        hub.apply(snapshot)
    old_redis = hub.current("redis").snapshot
    old = hub.current("internet").snapshot
    new = await store.set_stock("internet", 9)  # the hub has not heard of it (it lags)
    assert hub.current("internet").snapshot == old
    ws_base = app.base.replace("http://", "ws://")
    socket = await websocket_connect(
        f"{ws_base}/cart/status?sku=internet&sku=redis"
        f"&since={new.epoch}:{new.version},{old_redis.epoch}:{old_redis.version}")
    try:
        first = json.loads(await socket.read_message())
        second = json.loads(await socket.read_message())
        # the book it was not behind on at once; the other only once read from Redis
        assert (first["sku"], first["version"]) == ("redis", old_redis.version)
        assert (second["sku"], second["version"]) == ("internet", new.version), second
    finally:
        socket.close()
    reply = await AsyncHTTPClient(force_instance=True).fetch(
        f"{app.base}/cart/status?sku=internet&since=x:%C2%B2",
        headers={"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                 "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}, raise_error=False)
    assert reply.code == 400 and json.loads(reply.body)["error"] == "bad_since"


async def test_every_answer_carries_the_security_headers_and_no_server(shop):
    app, _, _ = shop
    client = AsyncHTTPClient(force_instance=True)
    try:
        for path in ("/", "/books", "/api/books", "/no-such-page", "/cart/status?sku=nope"):
            reply = await client.fetch(app.base + path, raise_error=False)
            assert reply.headers["X-Content-Type-Options"] == "nosniff", path
            assert "frame-ancestors 'none'" in reply.headers["Content-Security-Policy"], path
            assert reply.headers["Referrer-Policy"] == "same-origin", path
            assert "Server" not in reply.headers, path
    finally:
        client.close()


async def test_the_policy_allows_scripts_and_styles_from_this_site_and_the_import_map_only(shop):
    app, _, _ = shop
    client = AsyncHTTPClient(force_instance=True)
    try:
        for path in ("/", "/books", "/books/internet"):
            reply = await client.fetch(app.base + path)
            policy = reply.headers["Content-Security-Policy"]
            assert "unsafe-inline" not in policy and "style-src 'self';" in policy, path
            page = reply.body.decode()
            inline = re.findall(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", page, re.S)
            assert len(inline) == 1, path  # the import map, and nothing else
            digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
            assert f"'sha256-{digest}'" in policy, path
            assert not re.search(r"\sstyle=", page), path  # no inline style either
    finally:
        client.close()


async def test_the_seeds_cursorless_long_poll_does_not_miss_a_change_between_polls(start_app):
    """The seed's client sends no `since`: the cookie of its last answer stands in, so a
    change made between two polls is answered at once instead of waiting for the next."""
    app = await start_app(BB_LONGPOLL_TIMEOUT_S="5", BB_PUSH_INTERVAL_S="0")
    store, hub = app.services.store, app.services.hub
    await store.seed()
    for snapshot in await store.snapshots(store.catalog.skus):
        hub.apply(snapshot)
    client = AsyncHTTPClient(force_instance=True)
    url = f"{app.base}/cart/status?sku=internet"
    try:
        first = asyncio.ensure_future(client.fetch(url))  # parks: the seed's first poll
        await asyncio.sleep(0.2)
        hub.apply(await store.set_stock("internet", 9))
        answered = await asyncio.wait_for(first, 5)
        cookie = answered.headers["Set-Cookie"].split(";")[0]
        assert "HttpOnly" in answered.headers["Set-Cookie"]
        between = await store.set_stock("internet", 8)  # while no poll is open
        hub.apply(between)
        again = await asyncio.wait_for(client.fetch(url, headers={"Cookie": cookie}), 1)
        assert json.loads(again.body)["version"] == between.version
        # without the cookie (the seed's protocol alone) the change would be missed: it waits
        waiting = asyncio.ensure_future(client.fetch(url))
        await asyncio.sleep(0.5)
        assert not waiting.done()
        waiting.cancel()
        # a cookie that is not ours, or for other books, changes nothing: it waits
        foreign = asyncio.ensure_future(client.fetch(url, headers={
            "Cookie": "bb_lp_answered=not-base64!"}))
        await asyncio.sleep(0.3)
        assert not foreign.done()
        foreign.cancel()
    finally:
        client.close()


async def test_a_last_answered_cookie_nested_too_deep_is_ignored(start_app):
    app = await start_app(BB_LONGPOLL_TIMEOUT_S="0.2")
    await app.services.store.seed()
    for snapshot in await app.services.store.snapshots(["internet"]):
        app.services.hub.apply(snapshot)
    client = AsyncHTTPClient(force_instance=True)
    deep = base64.urlsafe_b64encode(b"[" * 3000).decode()
    try:
        reply = await client.fetch(f"{app.base}/cart/status?sku=internet",
                                   headers={"Cookie": f"bb_lp_answered={deep}"},
                                   raise_error=False)
        assert reply.code == 200  # the seed's behaviour: the hold, then the snapshot
    finally:
        client.close()


async def test_a_coalesced_fan_out_of_what_a_poll_had_does_not_answer_it(start_app):
    """A poll that parks after the newest snapshot was stored, while its fan-out waits for
    the push interval, already has it: the delayed fan-out is no news to it."""
    app = await start_app(BB_LONGPOLL_TIMEOUT_S="5", BB_PUSH_INTERVAL_S="0.3")
    store, hub = app.services.store, app.services.hub
    await store.seed()
    hub.apply(await store.set_stock("internet", 9))  # fans out at once
    newest = await store.set_stock("internet", 8)
    hub.apply(newest)  # within the interval: its fan-out waits
    client = AsyncHTTPClient(force_instance=True)
    try:
        poll = asyncio.ensure_future(client.fetch(
            f"{app.base}/cart/status?sku=internet&since={newest.epoch}:{newest.version}"))
        await asyncio.sleep(0.6)  # the delayed fan-out has gone out
        assert not poll.done()
        later = await store.set_stock("internet", 7)
        hub.apply(later)
        reply = await asyncio.wait_for(poll, 2)
        assert json.loads(reply.body)["version"] == later.version
    finally:
        client.close()
