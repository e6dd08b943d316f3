"""Fixtures for the integration suite: a real redis-server and app instances as real
OS processes (started and stopped with service.procs), plus small async clients.

* `cluster`  - function scope: a fresh redis-server (AOF on) on a free port in tmp_path;
               tests start app instances with `cluster.start_apps("app-a", "app-b", **env)`.
               Teardown stops every process by PID (procs.stop), even when the test failed.
* `shop`     - function scope: HTTP (tornado AsyncHTTPClient) and WebSocket clients bound
               to the test's event loop; closes every socket it opened at teardown.
* `upstream_sim` - function scope: the cluster's simulated search API
               (`cluster.start_upstream_sim(...)`, stopped with the cluster); apps reach it
               through `BB_UPSTREAM_URL=cluster.sim.url`.

When a test fails, the tail of the Redis and instance logs is attached to its report.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

import pytest
import redis as redis_sync
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from service import paths
from service.ops import probes, procs
from support.redis_cluster import LocalRedisCluster

COOKIE_SECRET = "integration-test-cookie-secret-0123456789"
FEATURED = "internet"
SESSION_FIELD = re.compile(r'<input type="hidden" id="session" name="session" value="([^"]+)">')
LOG_TAIL_LINES = 40
PARKED_GAUGE = re.compile(r'^bb_open_connections\{transport="longpoll"\} (\S+)$', re.MULTILINE)


# --------------------------------------------------------------------------- processes

@dataclasses.dataclass
class App:
    name: str
    port: int
    env: dict
    log_path: Path
    proc: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_base(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclasses.dataclass
class UpstreamSim:
    """The simulated upstream search API (`python -m service upstream-sim`), a real process."""
    port: int
    log_path: Path
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _call(self, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        with urllib.request.urlopen(urllib.request.Request(self.url + path, data=data),
                                    timeout=5) as reply:
            return json.loads(reply.read())

    def stats(self) -> dict[str, int]:
        """Searches served so far, per query (or Mastodon tag)."""
        return self._call("/stats")["requests"]

    def reset(self) -> None:
        """Zero the counters and go back to answering normally."""
        self._call("/stats/reset", {})
        self.control("ok")

    def control(self, mode: str, extra_latency_ms: float = 0) -> dict:
        """mode: ok | 500 | timeout | malformed | empty."""
        return self._call("/control", {"mode": mode, "extra_latency_ms": extra_latency_ms})


class Cluster:
    """One redis-server (or, with redis_mode "cluster", a Redis Cluster of three shards)
    and any number of app instances, all real processes."""

    def __init__(self, workdir: Path, redis_mode: str = "single"):
        self.dir = workdir
        self.redis_mode = redis_mode
        self.redis_cluster: LocalRedisCluster | None = None
        self.redis_port = probes.free_port()
        self.redis_dir = workdir / "redis-data"
        self.redis_log = workdir / "redis.log"
        self.redis_proc: subprocess.Popen | None = None
        self.apps: dict[str, App] = {}
        self.sim: UpstreamSim | None = None
        self._redis_client: redis_sync.Redis | None = None

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def redis_env(self) -> dict[str, str]:
        """The settings that lead an instance (or the CLI) to this test's Redis."""
        if self.redis_cluster is not None:
            return self.redis_cluster.env
        return {"BB_REDIS_URL": self.redis_url}

    # ---- redis-server
    def start_redis(self) -> None:
        if self.redis_mode == "cluster":
            self.redis_cluster = LocalRedisCluster(self.dir / "redis-cluster").start()
            return
        self.redis_proc = procs.start_redis(self.redis_port, self.redis_dir, self.redis_log)

    def stop_redis(self) -> int | None:
        code = procs.stop(self.redis_proc)
        if self._redis_client is not None:
            self._redis_client.close()
            self._redis_client = None
        return code

    def redis(self) -> redis_sync.Redis:
        if self._redis_client is None and self.redis_cluster is not None:
            self._redis_client = self.redis_cluster.client()
        if self._redis_client is None:
            self._redis_client = redis_sync.Redis(host="127.0.0.1", port=self.redis_port,
                                                  socket_timeout=5)
        return self._redis_client

    def redis_state(self) -> dict[bytes, bytes]:
        """Every bb:* key with its DUMP (type, value and scores, byte for byte), except the
        instances' heartbeats, which change every couple of seconds by design."""
        client = self.redis()
        return {key: client.dump(key) for key in sorted(client.scan_iter("bb:*"))
                if not key.startswith(b"bb:{instances}")}

    # ---- the simulated upstream search API
    def start_upstream_sim(self, latency_ms: float = 0, error_rate: float = 0.0) -> UpstreamSim:
        self.sim = UpstreamSim(probes.free_port(), self.dir / "upstream-sim.log")
        self.sim.proc = procs.start_upstream_sim(self.sim.port, latency_ms, error_rate,
                                                 self.sim.log_path)
        return self.sim

    # ---- app instances
    def start_apps(self, *names: str, ready_timeout_s: float = 30, **env) -> list[App]:
        """Start instances (in parallel) and wait until each answers /readyz 200."""
        started = []
        for name in names:
            app_env = {
                **self.redis_env,
                "BB_INSTANCE_ID": name,
                "BB_COOKIE_SECRET": COOKIE_SECRET,
                "BB_LONGPOLL_TIMEOUT_S": "5",
                "BB_DRAIN_S": "2",
                **{k: str(v) for k, v in env.items()},
            }
            app = App(name, probes.free_port(), app_env, self.dir / f"{name}.log")
            self.apps[name] = app
            app.proc = procs.start_instance(app.port, app.env, app.log_path)
            started.append(app)
        for app in started:
            self.wait_ready(app.name, ready_timeout_s)
        return started

    def wait_ready(self, name: str, timeout_s: float = 30) -> None:
        app = self.apps[name]
        probes.wait_until(lambda: probes.is_ready(app.port), timeout_s, f"{name} /readyz", app.proc)

    def stop_app(self, name: str) -> int | None:
        return procs.stop(self.apps[name].proc)

    def restart_app(self, name: str, ready_timeout_s: float = 30) -> App:
        """SIGTERM the instance, then start it again on the same port with the same env."""
        app = self.apps[name]
        procs.stop(app.proc)
        probes.wait_until(lambda: probes.port_is_free(app.port), 10, f"port {app.port} freed")
        app.proc = procs.start_instance(app.port, app.env, app.log_path)
        self.wait_ready(name, ready_timeout_s)
        return app

    def stop_all(self) -> None:
        errors = []
        for app in self.apps.values():
            if app.proc is not None:
                try:
                    procs.stop(app.proc)
                except Exception as exc:  # keep stopping the others
                    errors.append(exc)
        if self._redis_client is not None:
            self._redis_client.close()
            self._redis_client = None
        if self.redis_proc is not None:
            procs.stop(self.redis_proc)
        if self.redis_cluster is not None:
            self.redis_cluster.stop()
        if self.sim is not None and self.sim.proc is not None:
            procs.stop(self.sim.proc)
        if errors:
            raise errors[0]

    # ---- CLI
    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """`python -m service ARGS` against this cluster's Redis."""
        result = subprocess.run([sys.executable, "-m", "service", *args], cwd=paths.ROOT,
                                env={**os.environ, **self.redis_env},
                                capture_output=True, text=True, timeout=30)
        if check and result.returncode != 0:
            raise AssertionError(f"`python -m service {' '.join(args)}` failed "
                                 f"({result.returncode}): {result.stdout}{result.stderr}")
        return result

    def set_stock(self, sku: str, count: int) -> None:
        self.cli("stock", "set", sku, str(count))

    def stock_show(self) -> dict[str, dict]:
        """`stock show`, parsed: sku -> {stock, holds, count, version, epoch}."""
        rows = {}
        for line in self.cli("stock", "show").stdout.splitlines()[1:]:
            if line.startswith(("Redis:", " ")):  # where the inventory lives, last
                break
            sku, stock, holds, count, version, epoch = line.split()
            rows[sku] = {"stock": int(stock), "holds": int(holds), "count": int(count),
                         "version": int(version), "epoch": epoch}
        return rows

    # ---- diagnostics
    def log_tails(self, lines: int = LOG_TAIL_LINES) -> str:
        parts = []
        sim = [("upstream-sim", self.sim.log_path)] if self.sim is not None else []
        nodes = [(f"redis node {port}", self.redis_cluster.log(port))
                 for port in self.redis_cluster.ports] if self.redis_cluster else []
        for label, path in [("redis-server", self.redis_log), *nodes, *sim,
                            *[(a.name, a.log_path) for a in self.apps.values()]]:
            try:
                text = path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                text = ["(no log)"]
            parts.append(f"----- {label} ({path}) -----\n" + "\n".join(text))
        return "\n".join(parts)


@pytest.fixture(scope="session")
def cluster_class():
    """The Cluster class, for modules that build their own (e.g. module-scoped) cluster."""
    return Cluster


@pytest.fixture
def cluster(tmp_path):
    """A fresh redis-server; start instances with cluster.start_apps(...)."""
    c = Cluster(tmp_path)
    try:
        c.start_redis()
        yield c
    finally:
        c.stop_all()


@pytest.fixture
def upstream_sim(cluster):
    """The simulated search API for this test's cluster (no added latency)."""
    return cluster.start_upstream_sim()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        c = getattr(item, "funcargs", {}).get("cluster")
        if isinstance(c, Cluster):
            report.sections.append((f"process logs ({report.when})", c.log_tails()))


# --------------------------------------------------------------------------- clients

@dataclasses.dataclass
class Reply:
    status: int
    headers: object
    body: bytes
    elapsed_s: float
    done_at: float

    def json(self):
        return json.loads(self.body)


class WsRecorder:
    """Reads every message of a WebSocket in the background, with its arrival time."""

    def __init__(self, conn: WebSocketClientConnection, label: str = ""):
        self.conn = conn
        self.label = label
        self.messages: list[tuple[float, dict]] = []
        self.closed = False
        self._changed = asyncio.Event()
        self._pongs: dict[bytes, asyncio.Future] = {}
        conn.on_pong = self._on_pong  # the client's hook for the server's answers to pings
        self.task = asyncio.ensure_future(self._run())

    def _on_pong(self, data: bytes) -> None:
        waiter = self._pongs.pop(data, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def round_trip(self, timeout_s: float = 5) -> None:
        """Ping the server and wait for its pong: every frame sent before has been read
        and handled, and the socket is still open."""
        data = os.urandom(8).hex().encode()
        pong = self._pongs[data] = asyncio.get_running_loop().create_future()
        self.conn.ping(data)
        closed = asyncio.ensure_future(asyncio.shield(self.task))
        try:
            done, _ = await asyncio.wait([pong, closed], timeout=timeout_s,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
        if pong not in done:
            raise AssertionError(f"WebSocket {self.label}: "
                                 f"{'closed' if self.closed else 'no pong'} within {timeout_s}s")

    async def _run(self):
        try:
            while True:
                raw = await self.conn.read_message()
                if raw is None:
                    break
                self.messages.append((time.monotonic(), json.loads(raw)))
                self._changed.set()
        finally:
            self.closed = True
            self._changed.set()

    @property
    def payloads(self) -> list[dict]:
        return [m for _, m in self.messages]

    async def wait_for(self, predicate, timeout_s: float, start: int = 0) -> tuple[float, dict]:
        """(arrival time, message) of the first message from index `start` matching."""
        deadline = time.monotonic() + timeout_s
        index = start
        while True:
            while index < len(self.messages):
                arrived, message = self.messages[index]
                index += 1
                if predicate(message):
                    return arrived, message
            if self.closed:
                raise AssertionError(f"WebSocket {self.label} closed before a matching "
                                     f"message; got {self.payloads}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"WebSocket {self.label}: no matching message within "
                                     f"{timeout_s}s; got {self.payloads}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass

    async def wait_closed(self, timeout_s: float) -> None:
        await asyncio.wait_for(asyncio.shield(self.task), timeout_s)


class Shop:
    """HTTP and WebSocket clients for one test (one event loop)."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.http = AsyncHTTPClient(force_instance=True, max_clients=200)
        self._sockets: list[WebSocketClientConnection] = []
        self._recorders: list[WsRecorder] = []

    def app(self, name: str) -> App:
        return self.cluster.apps[name]

    async def fetch(self, name: str, path: str, method: str = "GET", body=None,
                    headers: dict | None = None, timeout_s: float = 20) -> Reply:
        started = time.monotonic()
        request = HTTPRequest(self.app(name).base + path, method=method, body=body,
                              headers=headers or {}, connect_timeout=5,
                              request_timeout=timeout_s, follow_redirects=False,
                              allow_nonstandard_methods=True)
        response = await self.http.fetch(request, raise_error=False)
        if response.code == 599:
            raise AssertionError(f"{method} {path} on {name}: no HTTP answer ({response.error})")
        done = time.monotonic()
        return Reply(response.code, response.headers, response.body or b"", done - started, done)

    async def get(self, name: str, path: str, **kw) -> Reply:
        return await self.fetch(name, path, **kw)

    async def post_cart(self, name: str, fields: dict | None = None, *, json_body=None,
                        raw: bytes | None = None, headers: dict | None = None) -> Reply:
        """POST /cart with form fields (default), a JSON body, or raw bytes."""
        headers = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers.setdefault("Content-Type", "application/json")
        elif raw is not None:
            body = raw
        else:
            body = urlencode(fields or {}).encode()
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        return await self.fetch(name, "/cart", method="POST", body=body, headers=headers)

    async def token(self, name: str) -> str:
        """A new shopper: GET / without cookies and read the hidden #session field."""
        reply = await self.get(name, "/")
        assert reply.status == 200, reply.body[:300]
        found = SESSION_FIELD.search(reply.body.decode())
        assert found, "no hidden #session field on the book page"
        return found.group(1)

    async def tokens(self, names: list[str], count: int) -> list[str]:
        return list(await asyncio.gather(*[self.token(names[i % len(names)])
                                           for i in range(count)]))

    async def books(self, name: str) -> dict[str, dict]:
        reply = await self.get(name, "/api/books")
        assert reply.status == 200, reply.body
        return {book["sku"]: book for book in reply.json()}

    async def cursor(self, name: str, sku: str = FEATURED) -> str:
        book = (await self.books(name))[sku]
        return f"{book['epoch']}:{book['version']}"

    async def ws_connect(self, name: str, query: str = "", headers: dict | None = None,
                         timeout_s: float = 5) -> WebSocketClientConnection:
        url = self.app(name).ws_base + "/cart/status" + (f"?{query}" if query else "")
        request = HTTPRequest(url, headers=headers or {}, connect_timeout=timeout_s,
                              request_timeout=timeout_s)
        conn = await websocket_connect(request)
        self._sockets.append(conn)
        return conn

    async def ws_recorder(self, name: str, query: str = "", label: str | None = None) -> WsRecorder:
        recorder = WsRecorder(await self.ws_connect(name, query), label or name)
        self._recorders.append(recorder)
        return recorder

    async def ws_status(self, name: str, query: str = "", headers: dict | None = None) -> int:
        """The HTTP status a refused WebSocket upgrade got (101 if it was accepted)."""
        try:
            conn = await self.ws_connect(name, query, headers)
        except HTTPClientError as exc:
            return exc.code
        conn.close()
        return 101

    async def parked_longpolls(self, name: str) -> int:
        """How many long-polls wait on the instance now (its /metrics gauge)."""
        reply = await self.get(name, "/metrics")
        assert reply.status == 200, reply.body[:300]
        found = PARKED_GAUGE.search(reply.body.decode())
        assert found, "no bb_open_connections{transport=\"longpoll\"} in /metrics"
        return int(float(found.group(1)))

    async def wait_parked(self, name: str, count: int, timeout_s: float = 5) -> None:
        """Wait until at least `count` long-polls are parked on the instance."""
        await self.poll_until(lambda: self._at_least(self.parked_longpolls(name), count),
                              timeout_s, f"{count} long-poll(s) parked on {name}", 0.02)

    @staticmethod
    async def _at_least(figure, count: int) -> bool:
        return await figure >= count

    async def poll_until(self, check, timeout_s: float, what: str, interval_s: float = 0.1):
        """Await `check()` repeatedly until it returns something truthy; return that."""
        deadline = time.monotonic() + timeout_s
        last = None
        while time.monotonic() < deadline:
            last = await check()
            if last:
                return last
            await asyncio.sleep(interval_s)
        raise AssertionError(f"{what}: not true after {timeout_s}s (last: {last!r})")

    async def aclose(self):
        for conn in self._sockets:
            conn.close()
        for recorder in self._recorders:
            recorder.task.cancel()
        await asyncio.sleep(0)
        self.http.close()


@pytest.fixture
async def shop(cluster):
    s = Shop(cluster)
    try:
        yield s
    finally:
        await s.aclose()

