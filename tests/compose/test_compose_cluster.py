"""The Redis Cluster override (docker-compose.cluster.yml) for real: six nodes as
containers made one cluster of three shards by the one-shot `redis-cluster-create`, the
app replicas on it; a change goes through nginx to a WebSocket; the first shard's primary
container killed: its replica is promoted, the holds made before are there, the other
shards' books go on selling, and once the old primary's container is back (as the
promoted node's replica) the first shard takes writes again."""

from __future__ import annotations

import json
import time

import pytest

from support.compose_stack import (
    book,
    cart,
    new_session,
    open_socket,
    redis_cli,
    redis_role,
    started_redis_stack,
)
from support.docker_engine import say

pytestmark = pytest.mark.timeout(600)
FILES = ("-f", "docker-compose.yml", "-f", "docker-compose.cluster.yml")
FAILOVER_TIMEOUT_S = 60
SKU, OTHER = "internet", "async"  # on the first shard and on the second


@pytest.fixture(scope="module")
def cluster_stack(engine):
    stack = started_redis_stack(engine, FILES, {"BB_CLUSTER_NODE_TIMEOUT_MS": "2000"},
                                "Redis Cluster topology")
    yield stack
    stack.run("down", "-v", "--timeout", "20", check=False)


def test_six_nodes_make_three_shards_and_a_change_reaches_a_socket(cluster_stack):
    info = redis_cli(cluster_stack, "redis", "cluster", "info")
    assert "cluster_state:ok" in info and "cluster_size:3" in info, info
    assert [redis_role(cluster_stack, node) for node in ("redis", "redis-2", "redis-3")] == \
        ["master"] * 3
    assert [redis_role(cluster_stack, f"redis-{n}-replica") for n in (1, 2, 3)] == ["slave"] * 3
    shown = cluster_stack.run("exec", "-T", "app", "python", "-m", "service", "stock", "show")
    assert "Redis: a cluster of 3 shard(s)" in shown.stdout, shown.stdout
    ws, _, snapshot = open_socket(cluster_stack)
    session = new_session(cluster_stack)
    assert cart(cluster_stack, session, "add").status == 200
    pushed = snapshot
    ws.settimeout(10)
    while pushed["version"] == snapshot["version"]:
        pushed = json.loads(ws.recv())
    assert pushed["inventoryCount"] == snapshot["inventoryCount"] - 1
    ws.close()
    assert cart(cluster_stack, session, "remove").status == 200
    # created once: a second run of the one-shot service finds the cluster made
    again = cluster_stack.run("run", "--rm", "redis-cluster-create")
    assert "exists already" in again.stdout + again.stderr


def primary_holding(stack, pattern: str) -> str | None:
    """The primary's service that holds a key matching `pattern`."""
    for service in ("redis", "redis-2", "redis-3"):
        if redis_cli(stack, service, "--scan", "--pattern", f"'{pattern}'"):
            return service
    return None


def test_killing_a_primary_container_keeps_its_holds_and_the_other_shards_sell(cluster_stack):
    probe = new_session(cluster_stack)
    assert cart(cluster_stack, probe, "add", OTHER).status == 200
    # The hold cap counts per client address under the address's own tag: adds from this
    # test's one address need that key's shard. Kill a shard that does not hold it.
    counted_on = primary_holding(cluster_stack, "bb:addr:*")
    assert cart(cluster_stack, probe, "remove", OTHER).status == 200
    victim, replica, sku, other = ("redis-2", "redis-2-replica", OTHER, SKU) \
        if counted_on == "redis" else ("redis", "redis-1-replica", SKU, OTHER)
    sessions = [new_session(cluster_stack) for _ in range(3)]
    for session in sessions:
        assert cart(cluster_stack, session, "add", sku).status == 200  # its replica has each
    held = book(cluster_stack, sku)["inventoryCount"]
    shopper = new_session(cluster_stack)
    cluster_stack.engine.docker("kill", "-s", "SIGKILL", cluster_stack.containers(victim)[0])
    killed = time.monotonic()
    other_sold, slowest = 0, 0.0
    while redis_role(cluster_stack, replica) != "master":
        assert time.monotonic() - killed < FAILOVER_TIMEOUT_S, "no replica was promoted"
        action = "remove" if other_sold % 2 else "add"  # the other shard sells on
        sent = time.monotonic()
        answer = cart(cluster_stack, shopper, action, other)
        slowest = max(slowest, time.monotonic() - sent)
        assert answer.status == 200, answer.body[:300]
        other_sold += 1
        time.sleep(0.2)
    promoted_s = time.monotonic() - killed
    cluster_stack.run("start", victim)  # back as the promoted node's replica
    latecomer = new_session(cluster_stack)
    while True:  # the shard takes writes once a replica follows the promoted node
        answer = cart(cluster_stack, latecomer, "add", sku)
        if answer.status == 200:
            break
        assert answer.status == 503 and answer.headers.get("retry-after"), answer.body[:300]
        assert time.monotonic() - killed < FAILOVER_TIMEOUT_S, "no write came back"
        time.sleep(0.3)
    writes_back_s = time.monotonic() - killed
    assert redis_role(cluster_stack, victim) == "slave"
    assert book(cluster_stack, sku)["inventoryCount"] == held - 1  # every earlier hold kept
    for session in [*sessions, latecomer]:  # and each is there to release
        assert cart(cluster_stack, session, "remove", sku).status == 200
    assert book(cluster_stack, sku)["inventoryCount"] == held + len(sessions)
    say(f"compose cluster failover: {replica} promoted {promoted_s:.1f}s after the kill of "
        f"{victim} ({other_sold} changes of {other} answered 200 meanwhile, the slowest in "
        f"{slowest:.2f}s); {sku} writable "
        f"again {writes_back_s:.1f}s after the kill")
