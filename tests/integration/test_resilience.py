"""Restarts and outages of real processes: app instances, redis-server, hold expiry."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

FEATURED = "internet"

pytestmark = pytest.mark.timeout(90)


def in_cart_on_page(body: bytes) -> bool:
    return 'data-in-cart="true"' in body.decode()


async def test_app_restart_keeps_holds(cluster, shop):
    cluster.start_apps("app-a", "app-b")
    holder, other = await shop.tokens(["app-a"], 2)
    for token in (holder, other):
        reply = await shop.post_cart("app-a", {"session": token, "action": "add"})
        assert reply.status == 200, reply.body
    before = (await shop.books("app-a"))[FEATURED]
    assert before["inventoryCount"] == 8

    # clients connected to app-a while it restarts: the drain answers the parked
    # long-poll and closes the socket with 1001 (going away) instead of dropping them
    socket = await shop.ws_recorder("app-a")
    await socket.wait_for(lambda m: True, 5)
    cursor = f"{before['epoch']}:{before['version']}"
    poll = asyncio.ensure_future(shop.get("app-a", f"/cart/status?since={cursor}"))
    await shop.wait_parked("app-a", 1)
    assert not poll.done()

    old_pid = shop.app("app-a").proc.pid
    await asyncio.to_thread(cluster.restart_app, "app-a")
    assert shop.app("app-a").proc.pid != old_pid
    drained = await asyncio.wait_for(poll, 5)
    assert drained.status == 200, drained.body
    assert drained.json()["version"] == before["version"]
    await socket.wait_closed(5)
    assert socket.conn.close_code == 1001, socket.conn.close_code

    after = (await shop.books("app-a"))[FEATURED]
    assert (after["inventoryCount"], after["version"], after["epoch"]) == (
        before["inventoryCount"], before["version"], before["epoch"])
    page = await shop.get("app-a", "/", headers={"Cookie": f"bb_session={holder}"})
    assert page.status == 200
    assert in_cart_on_page(page.body), "the restarted instance lost the session's cart state"
    assert f'value="{holder}"' in page.body.decode(), "the session was not recognised"

    removed = await shop.post_cart("app-a", {"session": holder, "action": "remove"})
    assert removed.status == 200, removed.body
    assert removed.json()["inventoryCount"] == 9
    assert removed.json()["inCart"] is False
    page = await shop.get("app-a", "/", headers={"Cookie": f"bb_session={holder}"})
    assert not in_cart_on_page(page.body)
    assert (await shop.books("app-b"))[FEATURED]["inventoryCount"] == 9


async def test_redis_restart_keeps_holds_and_existing_sockets_get_next_change(cluster, shop):
    apps = ["app-a", "app-b"]
    cluster.start_apps(*apps)
    holders = await shop.tokens(apps, 3)
    late = await shop.token("app-b")
    for token in holders:
        reply = await shop.post_cart("app-a", {"session": token, "action": "add"})
        assert reply.status == 200, reply.body
    before = (await shop.books("app-a"))[FEATURED]
    assert before["inventoryCount"] == 7
    holds_before = cluster.redis().zrange(f"bb:{{{FEATURED}}}:holds", 0, -1, withscores=True)
    assert len(holds_before) == 3

    sockets = [await shop.ws_recorder(app, label=app) for app in apps]
    for socket in sockets:
        await socket.wait_for(lambda m: m["version"] == before["version"], 5)

    await asyncio.to_thread(cluster.stop_redis)
    await asyncio.to_thread(cluster.start_redis)
    for app in apps:
        await shop.poll_until(lambda app=app: _ready(shop, app), 20, f"{app} ready after Redis restart")

    holds_after = cluster.redis().zrange(f"bb:{{{FEATURED}}}:holds", 0, -1, withscores=True)
    assert holds_after == holds_before, "an acknowledged hold was lost across the Redis restart"
    for app in apps:
        now = (await shop.books(app))[FEATURED]
        assert (now["inventoryCount"], now["version"], now["epoch"]) == (
            before["inventoryCount"], before["version"], before["epoch"])
    row = (await asyncio.to_thread(cluster.stock_show))[FEATURED]
    assert (row["holds"], row["count"]) == (3, 7)
    for socket in sockets:
        assert not socket.closed, f"the socket on {socket.label} was closed by the Redis restart"

    changed_at = time.monotonic()
    reply = await shop.post_cart("app-b", {"session": late, "action": "add"})
    assert reply.status == 200, reply.body
    change = reply.json()
    assert change["inventoryCount"] == 6
    for socket in sockets:
        arrived, pushed = await socket.wait_for(
            lambda m: m["version"] >= change["version"], 5 - (time.monotonic() - changed_at))
        assert pushed["inventoryCount"] == 6
        assert arrived - changed_at < 5.0


async def test_lost_subscription_resyncs_and_pushes_the_missed_change(cluster, shop):
    """A change published while the subscriptions are down reaches clients anyway."""
    from service import redis_keys as keys
    from service.inventory.scripts import (
        SET_STOCK as _SET_STOCK,  # the project's own script, not a copy
    )

    apps = ["app-a", "app-b"]
    cluster.start_apps(*apps)
    sockets = [await shop.ws_recorder(app, label=app) for app in apps]
    for socket in sockets:
        await socket.wait_for(lambda m: True, 5)

    # atomically: drop every pub/sub connection, then change the stock, so the
    # publication of this change reaches nobody
    pipe = cluster.redis().pipeline(transaction=True)
    pipe.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    sku_keys = keys.sku_keys(FEATURED)
    pipe.eval(_SET_STOCK, len(sku_keys), *sku_keys, keys.changes_channel(FEATURED), FEATURED,
              7)
    killed, result = await asyncio.to_thread(pipe.execute)
    assert killed >= 2, killed
    assert result[0] == b"ok" and result[1] == 7, result

    for socket in sockets:
        _, pushed = await socket.wait_for(lambda m: m["inventoryCount"] == 7, 8)
        assert pushed["version"] == int(result[2])
        assert not socket.closed
    for app in apps:
        await shop.poll_until(lambda app=app: _ready(shop, app), 10, f"{app} resubscribed")
        assert (await shop.books(app))[FEATURED]["inventoryCount"] == 7


async def _ready(shop, app: str) -> bool:
    return (await shop.get(app, "/readyz", timeout_s=5)).status == 200


async def _readyz_status(shop, app: str) -> int:
    return (await shop.get(app, "/readyz", timeout_s=5)).status


async def test_hold_expires_and_count_is_restored(cluster, shop):
    cluster.start_apps("app-a", "app-b", BB_HOLD_TTL_S=1, BB_SWEEP_INTERVAL_S=0.2)
    me = await shop.token("app-a")
    socket = await shop.ws_recorder("app-b")
    _, opening = await socket.wait_for(lambda m: True, 5)
    assert opening["inventoryCount"] == 10

    added_at = time.monotonic()
    added = await shop.post_cart("app-a", {"session": me, "action": "add"})
    assert added.status == 200, added.body
    assert added.json()["inventoryCount"] == 9
    await socket.wait_for(lambda m: m["inventoryCount"] == 9, 2)

    arrived, restored = await socket.wait_for(
        lambda m: m["inventoryCount"] == 10 and m["version"] > added.json()["version"], 3)
    assert arrived - added_at < 2.5, f"count restored after {arrived - added_at:.2f}s"
    assert (await shop.books("app-a"))[FEATURED]["inventoryCount"] == 10
    assert cluster.redis().zcard(f"bb:{{{FEATURED}}}:holds") == 0
    page = await shop.get("app-a", "/", headers={"Cookie": f"bb_session={me}"})
    assert 'data-in-cart="false"' in page.body.decode()

    removed = await shop.post_cart("app-b", {"session": me, "action": "remove"})
    assert removed.status == 200, removed.body
    assert (removed.json()["inventoryCount"], removed.json()["inCart"]) == (10, False)
    assert removed.json()["version"] == restored["version"], "a no-op remove bumped the version"

    again = await shop.post_cart("app-b", {"session": me, "action": "add"})
    assert again.status == 200, again.body
    assert (again.json()["inventoryCount"], again.json()["inCart"]) == (9, True)


async def test_redis_down_gives_503_and_recovers(cluster, shop):
    cluster.start_apps("app-a")
    me = await shop.token("app-a")

    await asyncio.to_thread(cluster.stop_redis)
    await shop.poll_until(lambda: _is(503, _readyz_status(shop, "app-a")), 5, "/readyz 503")
    ready = await shop.get("app-a", "/readyz")
    assert ready.json()["ready"] is False and ready.json()["problems"]

    reply = await shop.post_cart("app-a", {"session": me, "action": "add"})
    assert reply.status == 503, (reply.status, reply.body)
    assert reply.headers["Content-Type"].startswith("application/json")
    assert reply.json()["error"] == "unavailable"
    assert reply.headers.get("Retry-After") == "1"
    assert shop.app("app-a").alive()
    health = await shop.get("app-a", "/healthz")
    assert health.status == 200 and health.json()["status"] == "alive"

    await asyncio.to_thread(cluster.start_redis)
    await shop.poll_until(lambda: _ready(shop, "app-a"), 15, "/readyz 200 after Redis is back")
    reply = await shop.post_cart("app-a", {"session": me, "action": "add"})
    assert reply.status == 200, reply.body
    assert reply.json()["inventoryCount"] == 9


async def _is(expected: int, status) -> bool:
    return (await status) == expected


async def test_sigterm_turns_readyz_503_closes_keepalive_connections_and_exits_in_time(cluster, shop):
    [app] = cluster.start_apps("app-a", BB_DRAIN_S="4")
    # a proxy's kept-alive connection, opened before the SIGTERM
    reader, writer = await asyncio.open_connection("127.0.0.1", app.port)

    async def request(path: str) -> tuple[int, dict[str, str]]:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{app.port}\r\n\r\n".encode())
        head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).decode()
        lines = head.split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        await reader.readexactly(int(headers["Content-Length"]))
        return int(lines[0].split()[1]), headers

    assert (await request("/readyz"))[0] == 200
    started = time.monotonic()
    app.proc.send_signal(signal.SIGTERM)
    # the kept-alive connection is answered until the drain begins, then 503 and close
    deadline = time.monotonic() + 5
    status, headers = await request("/readyz")
    while status == 200 and time.monotonic() < deadline:
        status, headers = await request("/readyz")
    assert status == 503 and headers.get("Connection") == "close"
    # new connections are refused at once
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", app.port)
    writer.close()
    code = await asyncio.to_thread(app.proc.wait, 10)
    assert code == 0
    assert time.monotonic() - started < 4 + 1  # BB_DRAIN_S, and a little for the exit
