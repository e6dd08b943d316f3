"""`up --redis-ha`: the local cluster with a primary, two replicas and three sentinels
under supervisord; `ctl status` shows the roles, `ctl failover` promotes a replica, and a
hold made before it is still there after, on every instance and for a WebSocket."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from urllib.parse import urlencode

import pytest
import websocket

from support.deployment import Deployment

pytestmark = pytest.mark.timeout(180)
SESSION = re.compile(r'name="session" value="([^"]+)"')


@pytest.fixture(scope="module")
def ha_cluster(tmp_path_factory):
    deployment = Deployment(tmp_path_factory.mktemp("up-ha") / "var", instances=2,
                            up_args=("--redis-ha",))
    deployment.start()
    yield deployment
    deployment.stop()


def roles(cluster: Deployment) -> dict[str, str]:
    rows = [line.split() for line in cluster.ctl("status").splitlines()[1:]]
    return {row[0]: row[-1] for row in rows if row[0].startswith(("redis", "sentinel"))}


def post(cluster: Deployment, fields: dict[str, str]) -> tuple[int, dict]:
    request = urllib.request.Request(cluster.base + "/cart", data=urlencode(fields).encode())
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_status_shows_one_primary_two_replicas_and_three_sentinels(ha_cluster):
    assert sorted(roles(ha_cluster).items()) == [
        ("redis", "primary"), ("redis-2", "replica"), ("redis-3", "replica"),
        ("sentinel-1", "sentinel"), ("sentinel-2", "sentinel"), ("sentinel-3", "sentinel")]
    shown = ha_cluster.ctl("status")
    assert shown.count(" yes") == 2  # both instances ready through the sentinels


def test_a_planned_failover_keeps_the_hold_and_every_client_follows(ha_cluster):
    page = urllib.request.urlopen(ha_cluster.base + "/", timeout=10).read().decode()
    token = SESSION.search(page).group(1)
    status, added = post(ha_cluster, {"session": token, "action": "add", "sku": "redis"})
    assert status == 200 and added["inCart"], added
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{ha_cluster.http_port}/cart/status?sku=redis", timeout=15)
    assert json.loads(ws.recv())["inventoryCount"] == added["inventoryCount"]
    said = ha_cluster.ctl("failover")
    new = re.search(r"(redis(-\d)?) is the primary now", said).group(1)
    assert new != "redis", said
    deadline = time.monotonic() + 30
    while roles(ha_cluster).get("redis") != "replica":  # the old primary follows the new
        assert time.monotonic() < deadline, roles(ha_cluster)
        time.sleep(0.5)
    # the hold survived, and the books got a new epoch the socket was pushed
    moved = json.loads(ws.recv())
    assert moved["epoch"] != added["epoch"] and moved["inventoryCount"] == added["inventoryCount"]
    for app in ha_cluster.apps:
        with urllib.request.urlopen(f"{ha_cluster.app_base(app)}/api/books?sku=redis",
                                    timeout=10) as answer:
            assert json.loads(answer.read())[0]["inventoryCount"] == added["inventoryCount"]
    deadline = time.monotonic() + 30
    while True:  # writes go to the new primary once every sentinel names it
        status, removed = post(ha_cluster, {"session": token, "action": "remove",
                                            "sku": "redis"})
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert status == 200 and not removed["inCart"], removed
    assert removed["inventoryCount"] == added["inventoryCount"] + 1
    ws.close()
