"""The deployment end to end: `python -m service up` (supervisord, redis-server, the
upstream simulator, three instances, nginx; all real processes on free ports), used
through nginx, and operated with `python -m service ctl`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis as redis_sync
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from service import redis_keys as keys
from support.deployment import ROOT, Deployment, alive

SKU = "tornado"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    # Every client of these tests comes from 127.0.0.1, and together they hold far more
    # than one address may (BB_MAX_HOLDS_PER_ADDRESS; tests/integration/test_hold_limits.py
    # tests the cap): here it is off, as a deployment behind a trusted NAT could set it.
    # Likewise nginx's per-address rate limits (tests/integration/test_edge_limits.py):
    # the streams of POSTs here stand for many shoppers.
    deployment = Deployment(tmp_path_factory.mktemp("deploy") / "var",
                            env={"BB_MAX_HOLDS_PER_ADDRESS": "0",
                                 "BB_LIMIT_EXEMPT": "127.0.0.1"})
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()


async def post_cart(client: AsyncHTTPClient, base: str, token: str, action: str, sku: str = SKU):
    return await client.fetch(f"{base}/cart", method="POST", raise_error=False,
                              headers={"Content-Type": "application/json", "Origin": base},
                              body=json.dumps({"session": token, "action": action, "sku": sku}),
                              request_timeout=30)


async def open_socket(deployment: Deployment, sku: str = SKU):
    socket = await websocket_connect(HTTPRequest(
        f"ws://127.0.0.1:{deployment.http_port}/cart/status?sku={sku}",
        headers={"Origin": deployment.base}, connect_timeout=10, request_timeout=10))
    first = json.loads(await asyncio.wait_for(socket.read_message(), 10))
    return socket, first


async def read_until_version(socket, version: int, timeout_s: float = 5) -> dict:
    """Messages until one has at least `version`; never an older one after a newer."""
    deadline = time.monotonic() + timeout_s
    last = None
    while True:
        raw = await asyncio.wait_for(socket.read_message(), max(0.05, deadline - time.monotonic()))
        assert raw is not None, f"socket closed ({socket.close_code}) before version {version}"
        message = json.loads(raw)
        assert last is None or message["version"] >= last["version"]
        last = message
        if message["version"] >= version:
            return message


@pytest.mark.timeout(60)
async def test_answers_come_from_every_instance_and_static_files_from_nginx(deployment):
    client = AsyncHTTPClient()
    seen = set()
    for _ in range(30):
        reply = await client.fetch(f"{deployment.base}/api/books")
        seen.add(reply.headers["X-Instance"])
    assert seen == {"app-1", "app-2", "app-3"}
    static = await client.fetch(f"{deployment.base}/static/js/shop.js")
    assert static.headers["Server"] == "nginx" and "X-Instance" not in static.headers
    # the figures are scraped on each instance's own port, never through the front
    hidden = await client.fetch(f"{deployment.base}/metrics", raise_error=False)
    assert hidden.code == 404 and "bb_open_connections" not in hidden.body.decode()
    metrics = (await client.fetch(f"{deployment.app_base('app-1')}/metrics")).body.decode()
    assert 'bb_open_connections{transport="websocket"}' in metrics


@pytest.mark.timeout(60)
async def test_metrics_count_cart_operations_cache_lookups_and_upstream_latency(deployment):
    client = AsyncHTTPClient()
    app_1 = f"http://127.0.0.1:{deployment.first_app_port}"
    _, token = deployment.session()
    for action in ("add", "add", "remove"):
        assert (await post_cart(client, app_1, token, action)).code == 200
    assert (await post_cart(client, app_1, "forged", "add")).code == 403
    query = f"metrics{time.monotonic_ns()}"
    for _ in range(2):
        await client.fetch(f"{app_1}/api/rate?q={query}")
    metrics = (await client.fetch(f"{app_1}/metrics")).body.decode()

    def value(sample: str) -> float:
        line = next(line for line in metrics.splitlines() if line.startswith(sample + " "))
        return float(line.split()[-1])
    assert value('bb_cart_operations_total{action="add",result="ok"}') >= 2
    assert value('bb_cart_operations_total{action="remove",result="ok"}') >= 1
    assert value('bb_cart_operations_total{action="none",result="bad_session"}') >= 1
    assert value('bb_search_lookups_total{cache="miss"}') >= 1
    assert value('bb_search_lookups_total{cache="hit"}') >= 1
    assert value('bb_upstream_request_seconds_count{outcome="ok"}') >= 1
    assert value("bb_draining") == 0


@pytest.mark.timeout(60)
async def test_the_admin_page_needs_the_token_and_lists_every_instance(deployment):
    client = AsyncHTTPClient()
    url = f"{deployment.base}/admin/cluster.json"
    token = (deployment.var_dir / "admin_token").read_text().strip()

    async def get(target, **headers):
        return await client.fetch(target, headers=headers, raise_error=False,
                                  follow_redirects=False)

    in_url = await get(f"{url}?token={token}")  # refused even when right: URLs get logged
    assert in_url.code == 400 and json.loads(in_url.body)["error"] == "token_in_url"
    assert (await get(url)).code == 401
    assert (await get(url, Authorization="Bearer " + "x" * 32)).code == 401
    view = json.loads((await get(url, Authorization=f"Bearer {token}")).body)
    assert {(i["id"], i["state"]) for i in view["instances"]} >= \
        {("app-1", "up"), ("app-2", "up"), ("app-3", "up")}
    assert {book["sku"] for book in view["books"]} >= {SKU, "internet"}

    page_url = f"{deployment.base}/admin/cluster"
    to_login = await get(page_url, Accept="text/html")
    assert to_login.code == 303 and to_login.headers["Location"] == "/admin/login"
    wrong = await client.fetch(f"{deployment.base}/admin/login", method="POST",
                               body="token=" + "x" * 32, raise_error=False)
    assert wrong.code == 403 and b"not the admin token" in wrong.body
    signed_in = await client.fetch(f"{deployment.base}/admin/login", method="POST",
                                   body=f"token={token}", follow_redirects=False,
                                   raise_error=False)
    assert signed_in.code == 303 and signed_in.headers["Location"] == "/admin/cluster"
    cookie = signed_in.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and token not in cookie
    page = await get(page_url, Cookie=cookie.split(";")[0], Accept="text/html")
    assert page.code == 200
    assert b"app-3" in page.body and b"/static/js/admin.js" in page.body
    # the token never reached a log: not nginx's, not the instances'
    for log_file in (deployment.var_dir / "log").glob("*.log"):
        assert token not in log_file.read_text(errors="replace"), log_file


@pytest.mark.timeout(60)
async def test_clients_on_different_instances_converge_through_nginx(deployment):
    client = AsyncHTTPClient()
    sockets = [await open_socket(deployment) for _ in range(6)]
    assert len({first["instance"] for _, first in sockets}) >= 2

    async def long_poll_until(version: int) -> dict:
        cursor = "0"  # a bare version: answers at once with whatever is newer
        while True:
            url = f"{deployment.base}/cart/status?sku={SKU}&since={cursor}"
            snapshot = json.loads((await client.fetch(url, request_timeout=40)).body)
            if snapshot["version"] >= version:
                return snapshot
            cursor = f"{snapshot['epoch']}:{snapshot['version']}"

    shoppers = [deployment.session()[1] for _ in range(12)]
    replies = await asyncio.gather(*(post_cart(client, deployment.base, t, "add") for t in shoppers))
    assert all(reply.code == 200 for reply in replies), [r.code for r in replies]
    assert len({reply.headers["X-Instance"] for reply in replies}) >= 2
    final_version = max(json.loads(reply.body)["version"] for reply in replies)
    final = json.loads((await client.fetch(f"{deployment.base}/cart/status?sku={SKU}&since=0")).body)
    polled = await asyncio.wait_for(asyncio.gather(*(long_poll_until(final_version) for _ in range(3))), 20)
    pushed = [await read_until_version(socket, final_version) for socket, _ in sockets]
    for snapshot in [*polled, *pushed]:
        assert snapshot["inventoryCount"] == final["inventoryCount"]
    for socket, _ in sockets:
        socket.close()
    # put the copies back for the next tests
    await asyncio.gather(*(post_cart(client, deployment.base, t, "remove") for t in shoppers))


@pytest.mark.timeout(90)
async def test_a_stopped_instance_closes_sockets_1001_and_clients_reconnect_without_a_miss(deployment):
    client = AsyncHTTPClient()
    sockets = [await open_socket(deployment) for _ in range(9)]
    on_app_2 = [socket for socket, first in sockets if first["instance"] == "app-2"]
    assert on_app_2, "least_conn spread 9 sockets without one on app-2"

    stopping = asyncio.create_task(asyncio.to_thread(deployment.ctl, "stop", "app-2"))
    for socket in on_app_2:
        while await asyncio.wait_for(socket.read_message(), 30) is not None:
            pass
        assert socket.close_code == 1001
    await stopping

    # a change while app-2 is away, then the reconnect (as the page's script does)
    _, token = deployment.session()
    change = json.loads((await post_cart(client, deployment.base, token, "add")).body)
    for _ in on_app_2:
        socket, first = await open_socket(deployment)
        assert first["instance"] != "app-2"
        assert first["version"] >= change["version"]
        assert first["inventoryCount"] == change["inventoryCount"]
        socket.close()
    for socket, first in sockets:
        if first["instance"] != "app-2":
            assert (await read_until_version(socket, change["version"]))["inventoryCount"] == \
                change["inventoryCount"]
            socket.close()
    deployment.ctl("start", "app-2")
    assert "app-2" in {(await client.fetch(f"{deployment.base}/api/books")).headers["X-Instance"]
                       for _ in range(12)}
    await post_cart(client, deployment.base, token, "remove")


@pytest.mark.timeout(120)
async def test_a_rolling_restart_under_steady_posts_fails_none_and_loses_no_hold(deployment):
    client = AsyncHTTPClient(max_clients=20)
    redis = deployment.redis()
    redis.set(keys.stock_key(SKU), 100_000)  # plenty of copies for the stream of adds
    acknowledged: list[str] = []
    failures: list[str] = []
    restarting = asyncio.create_task(asyncio.to_thread(deployment.ctl, "restart-all"))

    async def shopper():
        while not restarting.done():
            session_id, token = deployment.session()
            try:
                reply = await post_cart(client, deployment.base, token, "add")
            except (HTTPClientError, OSError) as exc:
                failures.append(repr(exc))
                continue
            if reply.code == 200 and json.loads(reply.body)["inCart"]:
                acknowledged.append(session_id)
            else:
                failures.append(f"{reply.code} {reply.body[:200]!r}")
    await asyncio.gather(*(shopper() for _ in range(4)))
    output = await restarting
    assert "all 3 instances restarted" in output
    assert not failures, failures[:5]
    assert len(acknowledged) > 50
    holds = redis.zrange(keys.holds_key(SKU), 0, -1)
    missing = set(acknowledged) - {member.decode() for member in holds}
    assert not missing, f"{len(missing)} acknowledged holds lost"
    assert json.loads((await client.fetch(f"{deployment.base}/api/books")).body)


@pytest.mark.timeout(120)
def test_redis_asks_for_the_password_up_made_and_no_command_line_shows_it(deployment):
    password = deployment.redis_password_file.read_text().strip()
    assert len(password) == 64
    with pytest.raises(redis_sync.AuthenticationError):
        redis_sync.Redis(host="127.0.0.1", port=deployment.redis_port, socket_timeout=5).ping()
    assert deployment.redis().ping()
    for name, pid in deployment.pids().items():
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        environment = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
        assert password not in command_line and password not in environment, name
    # the instances read it from the file
    app_environment = Path(f"/proc/{deployment.pids()['app-1']}/environ").read_bytes()
    assert f"BB_REDIS_PASSWORD_FILE={deployment.redis_password_file}".encode() in app_environment


def test_stock_finds_the_local_clusters_redis_and_password_by_var_dir(deployment):
    def stock(*args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "service", "stock", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=30,
                              env={**os.environ, **env})
    shown = stock("show", "--var-dir", str(deployment.var_dir))
    assert shown.returncode == 0 and "internet" in shown.stdout, shown.stderr
    refused = stock("show", BB_REDIS_URL=deployment.redis_url)
    assert refused.returncode == 1 and "give --var-dir" in refused.stderr, refused.stderr
    nowhere = stock("show", "--var-dir", str(deployment.var_dir.parent / "nothing-here"))
    assert nowhere.returncode == 2 and "no cluster was started from" in nowhere.stderr


def test_stopping_up_leaves_no_process_behind(tmp_path):
    deployment = Deployment(tmp_path / "var", instances=1)
    deployment.start()
    pids = deployment.pids()
    assert set(pids) == {"redis", "upstream-sim", "app-1", "nginx", "health-watch"}
    up_pid = deployment.proc.pid
    assert deployment.stop() == 0
    leftovers = {name: pid for name, pid in pids.items() if alive(pid)}
    assert not leftovers
    assert not alive(up_pid)
    assert not (deployment.var_dir / "up.pid").exists()


@pytest.mark.timeout(60)
def test_a_second_up_or_a_taken_port_gives_a_clear_error(deployment, tmp_path):
    second = subprocess.run(
        [sys.executable, "-m", "service", "up", "--var-dir", str(deployment.var_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert second.returncode == 2 and "already running" in second.stderr
    taken = subprocess.run(
        [sys.executable, "-m", "service", "up", "--var-dir", str(tmp_path / "var"),
         "--http-port", str(deployment.http_port)],
        cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert taken.returncode == 2 and f"nginx {deployment.http_port}" in taken.stderr


@pytest.mark.timeout(60)
async def test_restarting_nginx_with_sockets_open_is_quick_and_leaves_no_worker(deployment):
    before = nginx_pids(deployment)
    sockets = [await open_socket(deployment) for _ in range(3)]  # they would hold a stop
    started = time.monotonic()
    await asyncio.to_thread(deployment.ctl, "restart", "nginx")
    assert time.monotonic() - started < 5, "nginx took too long to stop"
    for socket, _ in sockets:  # closed with the old nginx, not left open
        assert await asyncio.wait_for(socket.read_message(), 5) is None
    assert not [pid for pid in before if alive(pid)], "an old nginx process outlived it"
    socket, first = await open_socket(deployment)  # and the new nginx serves
    assert first["sku"] == SKU
    socket.close()


def nginx_pids(deployment: Deployment) -> list[int]:
    """nginx's master (from `ctl status`) and its workers (from /proc)."""
    master = deployment.pids()["nginx"]
    children = [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()
                and _parent(entry) == master]
    return [master, *children]


def _parent(entry: Path) -> int:
    try:
        return int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


@pytest.mark.timeout(60)
async def test_a_hung_instance_is_taken_out_of_nginx_and_put_back(deployment):
    client = AsyncHTTPClient()
    pid = deployment.pids()["app-3"]
    workers = set(nginx_pids(deployment)[1:])
    os.kill(pid, signal.SIGSTOP)  # it accepts connections and never answers
    try:
        stopped_at = time.monotonic()
        await wait_for_upstream(deployment, "app-3", down=True, timeout_s=5)
        assert time.monotonic() - stopped_at < 4, "the watcher took too long"
        # and nginx has reloaded: new connections go to workers with the new upstream
        # (old ones finish what they hold, on app-3 too, until nginx's read timeout)
        deadline = time.monotonic() + 5
        while not set(nginx_pids(deployment)[1:]) - workers:
            assert time.monotonic() < deadline, "nginx did not reload"
            await asyncio.sleep(0.1)
        answers = [await client.fetch(f"{deployment.base}/api/books", request_timeout=5)
                   for _ in range(15)]
        assert {a.headers["X-Instance"] for a in answers} <= {"app-1", "app-2"}
    finally:
        os.kill(pid, signal.SIGCONT)
    await wait_for_upstream(deployment, "app-3", down=False, timeout_s=5)
    seen = {(await client.fetch(f"{deployment.base}/api/books")).headers["X-Instance"]
            for _ in range(15)}
    assert "app-3" in seen


async def wait_for_upstream(deployment: Deployment, name: str, down: bool,
                            timeout_s: float) -> None:
    """Until nginx's upstream file has `name` down (or not)."""
    upstream = deployment.var_dir / "nginx" / "upstream.conf"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = next(line for line in upstream.read_text().splitlines() if f"# {name}" in line)
        if (" down;" in line) == down:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} not {'down' if down else 'up'} in {upstream.read_text()}")
