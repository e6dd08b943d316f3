"""Live fan-out across instances: long-poll and WebSocket, the purchase race, the seed
protocol (listings 5-4..5-8) and the long-poll hold."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter

import pytest

FEATURED = "internet"

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=["single", "cluster"])
def cluster(request, tmp_path, cluster_class):
    """Every test here runs on one Redis and on a Redis Cluster of three shards (the
    shop's four books are spread over two of them: checked below)."""
    c = cluster_class(tmp_path, redis_mode=request.param)
    try:
        c.start_redis()
        if c.redis_cluster is not None:
            homes = {c.redis_cluster.primary_of(sku)
                     for sku in ("internet", "tornado", "async", "redis")}
            assert len(homes) >= 2, f"the books all live on one shard: {homes}"
        yield c
    finally:
        c.stop_all()


async def timed(awaitable):
    """(result, monotonic time it completed)."""
    result = await awaitable
    return result, time.monotonic()


async def test_change_on_a_reaches_longpoll_and_websocket_on_b_within_1s(cluster, shop):
    cluster.start_apps("app-a", "app-b")
    shopper = await shop.token("app-a")
    before = (await shop.books("app-b"))[FEATURED]
    cursor = f"{before['epoch']}:{before['version']}"

    socket = await shop.ws_recorder("app-b")
    _, opening = await socket.wait_for(lambda m: True, 5)
    assert opening["inventoryCount"] == before["inventoryCount"]
    assert opening["instance"] == "app-b"

    poll = asyncio.ensure_future(timed(shop.get("app-b", f"/cart/status?since={cursor}")))
    await shop.wait_parked("app-b", 1)
    assert not poll.done(), "the long-poll answered although nothing changed"

    changed_at = time.monotonic()
    added = await shop.post_cart("app-a", {"session": shopper, "action": "add"})
    assert added.status == 200, added.body
    assert added.headers["X-Instance"] == "app-a"
    change = added.json()
    assert change["inventoryCount"] == before["inventoryCount"] - 1
    assert change["version"] > before["version"]
    assert change["inCart"] is True

    reply, poll_done = await asyncio.wait_for(poll, 3)
    assert reply.status == 200, reply.body
    assert reply.headers["X-Instance"] == "app-b"
    polled = reply.json()
    assert polled["instance"] == "app-b"
    assert (polled["inventoryCount"], polled["version"]) == (change["inventoryCount"],
                                                            change["version"])
    assert poll_done - changed_at < 1.0, f"long-poll on B took {poll_done - changed_at:.3f}s"

    arrived, pushed = await socket.wait_for(lambda m: m["version"] == change["version"], 3)
    assert pushed["inventoryCount"] == change["inventoryCount"]
    assert pushed["instance"] == "app-b"
    assert arrived - changed_at < 1.0, f"WebSocket on B took {arrived - changed_at:.3f}s"


async def _poll_observer(shop, app: str, cursor: str, seen: list[dict], until_version: int):
    """A long-poll client re-polling with its cursor until it has seen until_version."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        reply = await shop.get(app, f"/cart/status?since={cursor}")
        assert reply.status == 200, reply.body
        snapshot = reply.json()
        seen.append(snapshot)
        cursor = f"{snapshot['epoch']}:{snapshot['version']}"
        if snapshot["version"] >= until_version:
            return
    raise AssertionError(f"long-poll observer on {app} never reached version {until_version}")


async def test_sixty_shoppers_race_for_ten_copies_across_two_instances(cluster, shop):
    apps = ["app-a", "app-b"]
    cluster.start_apps(*apps)
    await asyncio.to_thread(cluster.set_stock, FEATURED, 10)
    start = (await shop.books("app-a"))[FEATURED]
    assert start["inventoryCount"] == 10
    v0 = start["version"]
    cursor = f"{start['epoch']}:{v0}"

    shoppers = await shop.tokens(apps, 60)
    assert len(set(shoppers)) == 60, "GET / without a cookie must give a new session"

    sockets = [await shop.ws_recorder(apps[i % 2], label=f"ws{i}-{apps[i % 2]}")
               for i in range(6)]
    for socket in sockets:
        await socket.wait_for(lambda m: m["version"] >= v0, 5)
    observed: list[list[dict]] = [[] for _ in range(4)]
    observers = [asyncio.ensure_future(_poll_observer(shop, apps[i % 2], cursor, observed[i],
                                                      v0 + 10))
                 for i in range(4)]
    for app in apps:  # two observers on each instance
        await shop.wait_parked(app, 2)

    # sixty shoppers from sixty addresses (as the proxy in front says): each address may
    # hold only BB_MAX_HOLDS_PER_ADDRESS copies
    replies = await asyncio.gather(*[
        shop.post_cart(apps[i % 2], {"session": token, "action": "add", "sku": FEATURED},
                       headers={"X-Real-IP": f"198.51.100.{i + 1}"})
        for i, token in enumerate(shoppers)])

    statuses = Counter(r.status for r in replies)
    assert statuses == {200: 10, 409: 50}, statuses
    won = [r.json() for r in replies if r.status == 200]
    assert sorted(w["version"] for w in won) == list(range(v0 + 1, v0 + 11))
    assert sorted(w["inventoryCount"] for w in won) == list(range(10))
    assert all(w["inCart"] is True for w in won)
    for lost in (r.json() for r in replies if r.status == 409):
        assert lost["error"] == "sold_out"
        assert lost["inventoryCount"] == 0

    # every observer ends at 0, never saw a negative count; socket versions only go up
    for socket in sockets:
        await socket.wait_for(lambda m: m["version"] == v0 + 10, 5)
    await asyncio.wait_for(asyncio.gather(*observers), 20)
    for socket in sockets:
        counts = [m["inventoryCount"] for m in socket.payloads]
        versions = [m["version"] for m in socket.payloads]
        assert min(counts) >= 0, (socket.label, counts)
        assert counts[-1] == 0, (socket.label, counts)
        assert all(b > a for a, b in itertools.pairwise(versions)), (socket.label, versions)
        assert len({m["epoch"] for m in socket.payloads}) == 1
    for seen in observed:
        assert seen and min(s["inventoryCount"] for s in seen) >= 0, seen
        assert seen[-1]["inventoryCount"] == 0, seen

    for app in apps:
        assert (await shop.books(app))[FEATURED]["inventoryCount"] == 0
    row = (await asyncio.to_thread(cluster.stock_show))[FEATURED]
    assert (row["stock"], row["holds"], row["count"], row["version"]) == (10, 10, 0, v0 + 10)


async def test_seed_jquery_client_protocol(cluster, shop):
    """Listings 5-4..5-8: hidden #session, form POST, no-cursor long-poll, silent socket."""
    cluster.start_apps("app-a", "app-b")
    host = f"127.0.0.1:{shop.app('app-a').port}"

    # like $.post("/cart", {session: $("#session").val(), action: "add"}) from the page
    me = await shop.token("app-a")
    added = await shop.post_cart("app-a", {"session": me, "action": "add"},
                                 headers={"Origin": f"http://{host}",
                                          "X-Requested-With": "XMLHttpRequest"})
    assert added.status == 200, added.body
    assert added.headers["Content-Type"].startswith("application/json")
    body = json.loads(added.body.decode("utf-8"))
    assert isinstance(body["inventoryCount"], int)
    count = body["inventoryCount"]

    # clicking again does not take a second copy (and changes no version)
    again = await shop.post_cart("app-a", {"session": me, "action": "add"},
                                 headers={"Origin": f"http://{host}"})
    assert again.status == 200, again.body
    assert (again.json()["inventoryCount"], again.json()["version"], again.json()["inCart"]) == (
        count, body["version"], True)

    # without JavaScript the page's own form posts with `next` and is redirected back
    page_form = await shop.post_cart("app-a", {"session": me, "action": "add", "sku": FEATURED,
                                               "next": f"/books/{FEATURED}"},
                                     headers={"Origin": f"http://{host}"})
    assert page_form.status == 303, page_form.body
    assert page_form.headers["Location"] == f"/books/{FEATURED}"

    # a WebSocket client that never sends anything (listing 5-8)
    socket = await shop.ws_recorder("app-b")
    await socket.wait_for(lambda m: m["inventoryCount"] == count, 5)

    # like $.getJSON("/cart/status", {session: ...}) waiting for the next change (5-6)
    poll = asyncio.ensure_future(shop.get("app-b", f"/cart/status?session={me}"))
    await shop.wait_parked("app-b", 1)
    assert not poll.done()
    other = await shop.token("app-b")
    other_added = await shop.post_cart("app-a", {"session": other, "action": "add"})
    assert other_added.status == 200, other_added.body
    reply = await asyncio.wait_for(poll, 5)
    assert reply.status == 200, reply.body
    assert reply.json()["inventoryCount"] == count - 1

    _, pushed = await socket.wait_for(lambda m: m["inventoryCount"] == count - 1, 5)
    assert set(pushed) >= {"inventoryCount", "sku", "version"}


async def test_longpoll_with_current_cursor_is_held_then_answers_200(cluster, shop):
    cluster.start_apps("app-a", BB_LONGPOLL_TIMEOUT_S=1)
    book = (await shop.books("app-a"))[FEATURED]
    cursor = f"{book['epoch']}:{book['version']}"

    reply = await shop.get("app-a", f"/cart/status?since={cursor}")
    assert reply.status == 200, (reply.status, reply.body)
    assert 0.5 <= reply.elapsed_s <= 3.0, reply.elapsed_s
    snapshot = reply.json()
    assert snapshot["sku"] == FEATURED
    assert (snapshot["inventoryCount"], snapshot["version"], snapshot["epoch"]) == (
        book["inventoryCount"], book["version"], book["epoch"])

    # several SKUs: one cursor each, answered as {"books": [...]} after the hold
    books = await shop.books("app-a")
    since = ",".join(f"{books[s]['epoch']}:{books[s]['version']}" for s in ("internet", "redis"))
    reply = await shop.get("app-a", f"/cart/status?sku=internet&sku=redis&since={since}")
    assert reply.status == 200, reply.body
    assert 0.5 <= reply.elapsed_s <= 3.0, reply.elapsed_s
    answer = reply.json()
    assert [b["sku"] for b in answer["books"]] == ["internet", "redis"]
    assert answer["instance"] == "app-a"
