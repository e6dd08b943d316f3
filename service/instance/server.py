"""One app instance's lifecycle: start, serve, and drain on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError
from tornado.httpserver import HTTPServer
from tornado.iostream import IOStream

from service import redis_keys
from service.config import Config
from service.inventory import Catalog, InventoryStore, ReplicaConfirm
from service.inventory.clock import RedisClock
from service.listen import listen
from service.live import InventoryFeed, LiveHub
from service.loops import every
from service.monitor.heartbeat import HEARTBEAT_INTERVAL_S, heartbeat, send_heartbeat
from service.monitor.metrics import Metrics
from service.redis_connect import connect
from service.search import SearchCache, Upstream
from service.web.app import make_app
from service.web.limits import MAX_HEADER_BYTES, SERVER_MAX_BODY_BYTES
from service.web.services import Services
from service.web.sockets import GOING_AWAY, KEEPALIVE_INTERVAL_S, ping_sockets, send_heartbeats

log = logging.getLogger(__name__)

# background tasks get this long to finish after cancellation before we stop waiting
TASK_STOP_TIMEOUT_S = 2.0
# the last word to Redis on the way out (the heartbeat's delete)
FAREWELL_TIMEOUT_S = 1.0
# An idle keep-alive connection is closed after this long, and a client gets this long for
# its whole request header. Just above nginx's upstream keepalive_timeout (2 s,
# nginx/compose.conf and ops/render.py): nginx always drops an idle connection first, so
# it never sends a request down one an instance is closing (a POST it could not retry).
# Through nginx a header arrives at once; a client that connects straight and sends
# nothing holds nothing for long. Not a WebSocket: Tornado stops timing it at the upgrade.
IDLE_CONNECTION_TIMEOUT_S = 3.0
# The longest a request body may take to arrive. nginx reads the whole body before it
# passes a request on, so this only ever cuts a slow client connected straight.
BODY_TIMEOUT_S = 5.0
# While draining, idle proxy connections get as long as they would anyway.
KEEPALIVE_GRACE_S = IDLE_CONNECTION_TIMEOUT_S


class CountingHTTPServer(HTTPServer):
    """An HTTPServer that knows how many HTTP connections it has open, through Tornado's
    public hooks (TCPServer.handle_stream, HTTPServerConnectionDelegate.on_close).

    A connection stops being counted when its HTTP exchange ends; a WebSocket does so
    at its upgrade (the hub knows the open sockets)."""

    open_connections = 0

    def handle_stream(self, stream: IOStream, address: tuple[Any, ...]) -> None:
        self.open_connections += 1
        super().handle_stream(stream, address)

    def on_close(self, server_conn: object) -> None:
        self.open_connections -= 1
        super().on_close(server_conn)


def build_services(config: Config) -> Services:
    """The instance's services, on the Redis clients the settings select."""
    catalog = Catalog.load(config.catalog_path)
    connection = connect(config)
    commands = connection.commands
    clock = RedisClock()  # learnt from the store's replies, stamped on the hub's answers
    confirm = ReplicaConfirm(1, config.redis_confirm_timeout_s) if connection.replicated \
        else None
    store = InventoryStore(commands, catalog, config.hold_ttl_s, clock,
                           hold_max_s=config.hold_max_s,
                           max_holds_per_address=config.max_holds_per_address, confirm=confirm,
                           nodes=connection.nodes)
    hub = LiveHub(config.instance_id, clock, config.push_interval_s)
    feed = InventoryFeed(connection.nodes, store, hub, promotions=connection.replicated)
    metrics = Metrics()
    upstream = Upstream(config.upstream_url, config.upstream_kind, config.upstream_timeout_s,
                        observe=metrics.observe_upstream)
    search = SearchCache(commands, upstream,
                         fresh_s=config.search_fresh_s, stale_s=config.search_stale_s,
                         upstream_timeout_s=config.upstream_timeout_s)
    return Services(config, catalog, commands, store, hub, feed, search=search,
                    metrics=metrics, connection=connection)


def background_tasks(services: Services) -> list[asyncio.Task[None]]:
    """The instance's loops: the subscription, the hold sweeper, pings and heartbeats."""
    config = services.config
    started_s = time.time()

    async def beat() -> None:
        if services.connection is not None:
            await services.connection.refresh_primary()
        await send_heartbeat(services.redis,
                             heartbeat(services, config.instance_id, config.port, started_s))

    loops = {
        "inventory-feed": services.feed.run(),
        "hold-sweeper": every(config.sweep_interval_s, services.store.sweep, log, "hold sweeper"),
        "socket-keepalive": every(KEEPALIVE_INTERVAL_S, keep_sockets_alive(services.hub), log,
                                  "socket keep-alive"),
        "heartbeat": every(HEARTBEAT_INTERVAL_S, beat, log, "heartbeat"),
        "socket-heartbeats": every(config.heartbeat_s, socket_heartbeats(services), log,
                                   "socket heartbeats"),
    }
    tasks = [asyncio.create_task(loop, name=name) for name, loop in loops.items()]
    for task in tasks:
        task.add_done_callback(_report_ended)
    return tasks


def _report_ended(task: asyncio.Task[None]) -> None:
    """The loops run until the instance stops them; one that ends otherwise is a bug
    whose symptom (stale counts, unswept holds) would point nowhere near it."""
    if task.cancelled():
        return
    log.error("background task %s ended on its own", task.get_name(),
              exc_info=task.exception())


async def run_instance(config: Config) -> None:
    """Serve until SIGTERM/SIGINT, then drain within config.drain_s."""
    if config.cookie_secret_is_random:
        log.warning("BB_COOKIE_SECRET is not set: using a random one; instances will not "
                    "accept each other's sessions. Set BB_COOKIE_SECRET for a cluster.")
    services = build_services(config)
    assert services.connection is not None
    await services.connection.check()  # a setting that leads nowhere stops the start
    sockets = listen(config.port, config.host, "stop what uses it or choose another with --port")
    server = CountingHTTPServer(make_app(services), max_body_size=SERVER_MAX_BODY_BYTES,
                                max_header_size=MAX_HEADER_BYTES,
                                idle_connection_timeout=IDLE_CONNECTION_TIMEOUT_S,
                                body_timeout=BODY_TIMEOUT_S)
    server.add_sockets(sockets)
    tasks = background_tasks(services)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info("instance %s listening on http://%s:%d (Redis: %s)", config.instance_id,
             config.host, config.port, services.connection.described)
    await stop.wait()
    await drain(services, server, config.drain_s)
    for task in tasks:
        task.cancel()
    _, stuck = await asyncio.wait(tasks, timeout=TASK_STOP_TIMEOUT_S)
    if stuck:
        log.warning("background task(s) %s did not stop in time",
                    ", ".join(task.get_name() for task in stuck))
    if services.search is not None:
        await services.search.aclose()  # background refreshes and the upstream HTTP client
    try:  # tell the others at once rather than when the heartbeat expires; bounded, as a
        # Redis that is gone (or a failover in progress) must not hold up the stop
        await asyncio.wait_for(
            services.redis.delete(redis_keys.heartbeat_key(config.instance_id)),
            FAREWELL_TIMEOUT_S)
    except (RedisError, OSError, TimeoutError):
        pass
    await services.connection.aclose()
    log.info("instance %s stopped", config.instance_id)


def socket_heartbeats(services: Services) -> Callable[[], Awaitable[None]]:
    async def step() -> None:
        send_heartbeats(services.hub, services.store.clock.now_ms())
    return step


def keep_sockets_alive(hub: LiveHub) -> Callable[[], Awaitable[None]]:
    async def step() -> None:
        closed = ping_sockets(hub)
        if closed:
            log.info("closed %d WebSocket(s) that stopped answering pings", closed)
    return step


async def drain(services: Services, server: CountingHTTPServer, drain_s: float) -> None:
    """Stop taking connections, answer long-polls, close sockets 1001, finish requests.

    Connections a proxy keeps alive stay open (answered with `Connection: close`) until
    the proxy drops them or KEEPALIVE_GRACE_S passes: closing one under the proxy's feet
    could fail a POST it had just sent, which it must not retry elsewhere.
    """
    started = time.monotonic()
    services.draining = True  # /readyz 503, `Connection: close`, long-polls answer at once
    server.stop()
    services.hub.release_all()
    sockets = services.hub.subscribers()
    for socket_handler in sockets:
        socket_handler.close(GOING_AWAY, "server shutting down")
    log.info("draining: %d socket(s) closed, %d request(s) in flight", len(sockets),
             services.inflight)

    def elapsed_s() -> float:
        return time.monotonic() - started

    def busy() -> bool:
        return services.inflight > 0 or (server.open_connections > 0
                                         and elapsed_s() < KEEPALIVE_GRACE_S)
    while busy() and elapsed_s() < drain_s:
        services.hub.release_all()
        await asyncio.sleep(0.05)
    if services.inflight:
        log.warning("drain time (%.1fs) over with %d request(s) still in flight",
                    drain_s, services.inflight)
    remaining_s = max(0.1, drain_s - elapsed_s())
    try:
        await asyncio.wait_for(server.close_all_connections(), timeout=remaining_s)
    except TimeoutError:
        log.warning("some connections did not close within the drain time")
    log.info("drained in %.2fs", elapsed_s())
