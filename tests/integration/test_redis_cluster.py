"""The shop on a Redis Cluster (BB_REDIS_CLUSTER): changes travel by SPUBLISH on the
book's own shard only; a book's primary killed under a stream of changes fails over
with every acknowledged hold kept while the other shards go on selling; a watched
book's slot moved to another primary under changes loses nothing and its watchers keep
receiving; bad settings stop the start. Real redis-server nodes (three shards, each a
primary and a replica) and real app processes."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import time

import pytest

from service import redis_keys as keys
from service.ops.cluster_slots import move_slot, slot_of
from service.paths import ROOT
from service.web import sessions
from support.redis_cluster import LocalRedisCluster

pytestmark = pytest.mark.timeout(180)

SKU = "internet"  # on the first shard
OTHER = "async"  # on the second


@pytest.fixture
def cluster(tmp_path, cluster_class):
    """App instances on a Redis Cluster of three shards."""
    c = cluster_class(tmp_path, redis_mode="cluster")
    try:
        c.start_redis()
        yield c
    finally:
        c.stop_all()


def start_apps(cluster, *names: str):
    return cluster.start_apps(*names, BB_REDIS_CONFIRM_TIMEOUT_S="0.5",
                              BB_MAX_HOLDS_PER_ADDRESS="0")


def session_of(cluster, token: str) -> str:
    session = sessions.session_id_from(cluster.apps["app-a"].env["BB_COOKIE_SECRET"], token)
    assert session is not None
    return session


class Shoppers:
    """Tokens adding and removing one book in a loop over two instances, remembering each
    session's last acknowledged state and when answers were 200."""

    def __init__(self, shop, sku: str, tokens: list[str]):
        self.shop, self.sku, self.tokens = shop, sku, tokens
        self.acked: dict[str, bool] = {}  # token -> held, as last answered with 200
        self.ok_at: list[float] = []
        self.failed: list[str] = []
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task] = []

    def start(self) -> Shoppers:
        self.tasks = [asyncio.ensure_future(self._shopper(i, token))
                      for i, token in enumerate(self.tokens)]
        return self

    async def finish(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks)

    async def _shopper(self, index: int, token: str) -> None:
        app = ("app-a", "app-b")[index % 2]
        holding = False
        while not self.stop.is_set():
            fields = {"session": token, "action": "remove" if holding else "add",
                      "sku": self.sku}
            try:
                reply = await self.shop.post_cart(app, fields)
            except Exception as exc:  # no HTTP answer at all
                self.failed.append(f"{app}: {exc!r}")
                await asyncio.sleep(0.1)
                continue
            if reply.status == 200:
                holding = reply.json()["inCart"]
                self.acked[token] = holding
                self.ok_at.append(time.monotonic())
            else:
                assert reply.status == 503, reply.body  # Redis not able to take it now
                self.failed.append(f"{app}: {reply.status} {reply.json()['error']}")
            await asyncio.sleep(0.05)

    def longest_gap_s(self, since: float, until: float) -> float:
        """The longest time without a 200 between `since` and `until`."""
        marks = [since, *[t for t in self.ok_at if since < t < until], until]
        return max(b - a for a, b in itertools.pairwise(marks))

    def check_against(self, cluster, redis) -> int:
        """Every acknowledged state is Redis's; returns the book's count there."""
        holders = set(redis.zrange(keys.holds_key(self.sku), 0, -1))
        for token, held in self.acked.items():
            assert ((session_of(cluster, token).encode() in holders) == held), (token, held)
        count = int(redis.get(keys.stock_key(self.sku))) - len(holders)
        assert count >= 0
        return count


async def converged(shop, ws, sku: str, count: int) -> None:
    """Both instances, a WebSocket and a long-poll show `count` for the book."""
    await ws.wait_for(lambda m: m.get("sku") == sku and m.get("inventoryCount") == count, 15)
    for app in ("app-a", "app-b"):
        await shop.poll_until(lambda a=app: _count_is(shop, a, sku, count), 15,
                              f"{app}'s count of {sku}")
    reply = await shop.get("app-b", f"/cart/status?sku={sku}&since=0")
    assert reply.status == 200 and reply.json()["inventoryCount"] == count, reply.body


async def _count_is(shop, app: str, sku: str, count: int) -> bool:
    return (await shop.books(app))[sku]["inventoryCount"] == count


async def test_a_change_travels_by_spublish_on_its_own_shard_only(cluster, shop):
    start_apps(cluster, "app-a")
    nodes: LocalRedisCluster = cluster.redis_cluster
    home = nodes.primary_of(SKU)
    others = [port for port in nodes.primary_ports if port != home]
    channel = keys.changes_channel(SKU)
    # every instance subscribes to the book's shard channel on the node that owns it
    assert channel in nodes.node(home).execute_command("PUBSUB", "SHARDCHANNELS")
    for port in others:
        assert channel not in nodes.node(port).execute_command("PUBSUB", "SHARDCHANNELS")
    for port in nodes.primary_ports:
        nodes.node(port).config_resetstat()
    token = await shop.token("app-a")
    reply = await shop.post_cart("app-a", {"session": token, "action": "add", "sku": SKU})
    assert reply.status == 200, reply.body
    stats = {port: nodes.node(port).info("commandstats") for port in nodes.primary_ports}
    assert stats[home]["cmdstat_spublish"]["calls"] >= 1
    for port in others:  # no other shard processed the change, nor any classic PUBLISH
        assert "cmdstat_spublish" not in stats[port], stats[port]
        assert "cmdstat_publish" not in stats[port]
    assert "cmdstat_publish" not in stats[home]


async def test_a_node_that_lost_its_scripts_is_given_them_again(cluster, shop):
    """A promoted replica has none of the scripts (Redis does not replicate SCRIPT LOAD):
    SCRIPT FLUSH on the book's primary stands in for it, for pipelines, WAITed changes
    and single calls alike."""
    start_apps(cluster, "app-a")
    nodes: LocalRedisCluster = cluster.redis_cluster
    home = nodes.node(nodes.primary_of(SKU))
    first = await shop.post_cart("app-a", {"session": await shop.token("app-a"),
                                           "action": "add", "sku": SKU})
    assert first.status == 200, first.body
    home.script_flush()
    again = await shop.post_cart("app-a", {"session": await shop.token("app-a"),
                                           "action": "add", "sku": SKU})
    assert again.status == 200, again.body
    home.script_flush()
    assert (await shop.get("app-a", "/api/books")).status == 200  # per-node pipelines
    home.script_flush()
    cluster.set_stock(SKU, 12)  # `stock set`: one script call through the cluster client
    assert cluster.stock_show()[SKU]["count"] == 12 - 2


async def test_a_books_primary_killed_under_changes_fails_over_with_every_acknowledged_hold(
        cluster, shop):
    start_apps(cluster, "app-a", "app-b")
    nodes: LocalRedisCluster = cluster.redis_cluster
    victim = nodes.primary_of(SKU)
    assert nodes.primary_of(OTHER) != victim  # the other book sells on another shard
    replica = nodes.replica_of(victim)
    ws = await shop.ws_recorder("app-b", f"sku={SKU}")
    tokens = await shop.tokens(["app-a"], 8)  # fewer than the 10 copies
    book = Shoppers(shop, SKU, tokens[:6]).start()
    other = Shoppers(shop, OTHER, tokens[6:]).start()  # 5 copies: two shoppers fit
    await asyncio.sleep(2)
    killed_at = time.monotonic()
    nodes.kill(victim)
    # (in threads: the shoppers go on in this event loop meanwhile)
    await asyncio.to_thread(
        nodes.wait, lambda: nodes.node(replica).info("replication")["role"] == "master", 30,
        "the replica promoted")
    promoted_at = time.monotonic()
    await asyncio.sleep(1)
    # back as the promoted node's replica: the shard takes writes again
    await asyncio.to_thread(nodes.start_node, victim)
    await asyncio.to_thread(
        nodes.wait, lambda: nodes.node(victim).info("replication").get("master_link_status")
        == "up", 30, "the old primary replicating from the promoted one")
    rejoined_at = time.monotonic()
    await shop.poll_until(lambda: _written_since(book, rejoined_at), 15, "a change answered")
    await asyncio.sleep(1)
    await book.finish()
    await other.finish()
    redis = cluster.redis()
    count = book.check_against(cluster, redis)
    other_count = other.check_against(cluster, redis)
    await converged(shop, ws, SKU, count)
    for app in ("app-a", "app-b"):
        assert await _count_is(shop, app, OTHER, other_count)
    other_gap = other.longest_gap_s(killed_at, rejoined_at)
    assert other_gap < 1.5, f"the other shard stopped selling for {other_gap:.1f}s: {other.failed}"
    print(f"cluster failover: promoted {promoted_at - killed_at:.1f}s after kill -9; "
          f"{SKU} without an answered change for "
          f"{book.longest_gap_s(killed_at - 1, time.monotonic()):.1f}s (the old primary "
          f"rejoined {rejoined_at - killed_at:.1f}s after the kill); {OTHER} on another shard: "
          f"longest gap {other_gap:.2f}s; {len(book.ok_at)} + {len(other.ok_at)} acknowledged "
          f"changes, {len(book.failed)} answered 503: {sorted(set(book.failed))}")


async def _written_since(shoppers: Shoppers, moment: float) -> bool:
    return any(t > moment for t in shoppers.ok_at)


async def test_a_watched_books_slot_moves_under_changes_and_nothing_is_lost(cluster, shop):
    start_apps(cluster, "app-a", "app-b")
    nodes: LocalRedisCluster = cluster.redis_cluster
    source = nodes.primary_of(SKU)
    target = next(port for port in nodes.primary_ports if port != source)
    watchers = [await shop.ws_recorder(app, f"sku={SKU}") for app in ("app-a", "app-b")]
    book = Shoppers(shop, SKU, await shop.tokens(["app-a"], 6)).start()
    await asyncio.sleep(1.5)
    started = time.monotonic()
    others = [("127.0.0.1", p) for p in nodes.primary_ports if p not in (source, target)]
    moved = await asyncio.to_thread(move_slot, slot_of(keys.stock_key(SKU)),
                                    ("127.0.0.1", source), ("127.0.0.1", target),
                                    nodes.password, others, lambda _: None)
    done = time.monotonic()
    assert moved >= 5  # the book's keys
    assert nodes.primary_of(SKU) == target
    await shop.poll_until(lambda: _written_since(book, done + 0.5), 15, "changes after the move")
    await asyncio.sleep(1)
    await book.finish()
    count = book.check_against(cluster, cluster.redis())
    for ws in watchers:  # each kept receiving the book's changes after the move
        assert any(at > done + 0.5 for at, m in ws.messages if m.get("sku") == SKU)
        await converged(shop, ws, SKU, count)
    print(f"slot move: {moved} keys in {done - started:.2f}s; longest time without an "
          f"answered change {book.longest_gap_s(started, done + 1):.2f}s; "
          f"{len(book.failed)} answered 503: {sorted(set(book.failed))}")


@pytest.mark.parametrize("value, words", [
    ("127.0.0.1", "BB_REDIS_CLUSTER: '127.0.0.1' is not host:port"),
    ("plain", "is a Redis without cluster mode"),
    ("127.0.0.1:1", "BB_REDIS_CLUSTER: no cluster node answers"),
])
def test_cluster_settings_that_lead_nowhere_stop_the_start(cluster_class, tmp_path, value,
                                                           words):
    plain = cluster_class(tmp_path)  # one Redis without cluster mode
    try:
        plain.start_redis()
        seeds = f"127.0.0.1:{plain.redis_port}" if value == "plain" else value
        done = subprocess.run([sys.executable, "-m", "service", "serve", "--port", "1"],
                              cwd=ROOT, capture_output=True, text=True, timeout=30,
                              env={"PATH": "/usr/bin:/bin", "BB_COOKIE_SECRET": "x" * 32,
                                   "BB_REDIS_CLUSTER": seeds})
    finally:
        plain.stop_all()
    assert done.returncode == 2, done.stdout + done.stderr
    assert words in done.stderr, done.stderr
