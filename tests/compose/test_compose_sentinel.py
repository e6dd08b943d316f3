"""The Sentinel override (docker-compose.sentinel.yml) for real: a primary, two replicas
and three sentinels as containers, the app replicas configured through the sentinels;
holds made before the primary's container is killed are all there after the sentinels
promote a replica, writes come back, a WebSocket follows, and the old primary's container
comes back as a replica."""

from __future__ import annotations

import json
import time

import pytest
import websocket

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
FILES = ("-f", "docker-compose.yml", "-f", "docker-compose.sentinel.yml")
FAILOVER_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def ha_stack(engine):
    stack = started_redis_stack(engine, FILES, {"BB_SENTINEL_DOWN_AFTER_MS": "2000"},
                                "Sentinel topology")
    yield stack
    stack.run("down", "-v", "--timeout", "20", check=False)


def primary_named(stack) -> str:
    """The data node the sentinels name as primary (they know the nodes by address)."""
    address = redis_cli(stack, "sentinel-1", "sentinel", "get-master-addr-by-name", "bb",
                        port=26379).split("\n")[0]
    last = {".11": "redis", ".12": "redis-2", ".13": "redis-3"}
    return next((name for end, name in last.items() if address.endswith(end)), address)


def failovers(stack) -> int:
    """How many failovers the sentinels have made (their configuration epoch)."""
    fields = redis_cli(stack, "sentinel-1", "sentinel", "master", "bb",
                       port=26379).split("\n")
    return int(dict(zip(fields[::2], fields[1::2]))["config-epoch"])


def test_the_sentinels_watch_one_primary_and_two_replicas(ha_stack):
    assert primary_named(ha_stack) == "redis"
    assert failovers(ha_stack) == 0
    assert [redis_role(ha_stack, node) for node in ("redis", "redis-2", "redis-3")] == \
        ["master", "slave", "slave"]
    network = ha_stack.settings["BB_REDIS_NETWORK"]
    replicas = redis_cli(ha_stack, "sentinel-1", "sentinel", "replicas", "bb", port=26379)
    assert f"{network}.12" in replicas and f"{network}.13" in replicas  # fixed addresses
    unauthenticated = ha_stack.run("exec", "-T", "sentinel-1", "redis-cli", "-p", "26379",
                                   "ping", check=False)
    assert "NOAUTH" in unauthenticated.stdout + unauthenticated.stderr


def test_killing_the_primary_container_loses_no_hold_and_it_returns_as_a_replica(ha_stack):
    sessions = [new_session(ha_stack) for _ in range(3)]
    latecomer = new_session(ha_stack)  # (the page reads Redis: it answers 503 meanwhile)
    for session in sessions:
        assert cart(ha_stack, session, "add").status == 200  # a replica has each
    held = book(ha_stack)["inventoryCount"]
    ws, instance, snapshot = open_socket(ha_stack)
    assert snapshot["inventoryCount"] == held
    ha_stack.engine.docker("kill", "-s", "SIGKILL", ha_stack.containers("redis")[0])
    killed = time.monotonic()
    while True:  # writes come back once the sentinels have promoted a replica
        answer = cart(ha_stack, latecomer, "add")
        if answer.status == 200:
            break
        assert answer.status == 503 and answer.headers.get("retry-after"), answer.body[:300]
        assert time.monotonic() - killed < FAILOVER_TIMEOUT_S, "no write came back"
        time.sleep(0.2)
    writes_back_s = time.monotonic() - killed
    promoted = primary_named(ha_stack)
    assert promoted in ("redis-2", "redis-3")
    assert book(ha_stack)["inventoryCount"] == held - 1  # every earlier hold is kept
    for session in [*sessions, latecomer]:  # and each is there to release
        assert cart(ha_stack, session, "remove").status == 200
    final = book(ha_stack)
    assert final["inventoryCount"] == held + len(sessions)
    # The WebSocket, kept open through the failover, ends on what Redis holds. Compared
    # with Redis's state as each frame comes, not with `final`: were the sentinels to fail
    # over once more (a loaded machine can starve the new primary past down-after), its
    # books get another epoch, and the socket must follow that too.
    ws.settimeout(30)
    seen = []
    while True:
        try:
            pushed = json.loads(ws.recv())
        except websocket.WebSocketTimeoutException:
            logs = ha_stack.engine.docker("logs", "--tail", "60",
                                          ha_stack.container_of(instance), check=False)
            raise AssertionError(
                f"{instance}'s WebSocket got no frame in 30 s; Redis holds {book(ha_stack)} "
                f"after {failovers(ha_stack)} failover(s); it got {seen}; its log:\n"
                f"{logs.stdout[-6000:]}{logs.stderr[-6000:]}") from None
        seen.append(pushed)
        now = book(ha_stack)
        if (pushed["epoch"], pushed["version"]) == (now["epoch"], now["version"]):
            break
    assert pushed["inventoryCount"] == final["inventoryCount"]
    ws.close()
    ha_stack.run("start", "redis")
    deadline = time.monotonic() + FAILOVER_TIMEOUT_S
    while redis_role(ha_stack, "redis") != "slave":
        assert time.monotonic() < deadline, "the old primary did not become a replica"
        time.sleep(1)
    assert primary_named(ha_stack) in ("redis-2", "redis-3")
    assert book(ha_stack)["inventoryCount"] == final["inventoryCount"]
    say(f"compose failover: writes back {writes_back_s:.1f}s after the kill; {promoted} "
        f"promoted; the old primary is a replica; failovers: {failovers(ha_stack)}")
