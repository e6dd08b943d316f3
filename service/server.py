"""One app instance's lifecycle: start, serve, and drain on SIGTERM."""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import signal
import time

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from redis.exceptions import RedisError

from service import keys
from service.app import Services, make_app
from service.background import every
from service.catalog import Catalog
from service.config import Settings
from service.inventory import InventoryStore
from service.live import InventoryFeed, LiveHub
from service.metrics import Metrics, send_heartbeat
from service.rate import Upstream
from service.search_cache import SearchCache
from service.sockets import GOING_AWAY, KEEPALIVE_INTERVAL_S, ping_sockets

log = logging.getLogger(__name__)

# Tornado's own cap; our handlers answer 413 for anything over keys.MAX_BODY_BYTES.
SERVER_MAX_BODY_BYTES = 1024 * 1024
# background tasks get this long to finish after cancellation before we stop waiting
TASK_STOP_TIMEOUT_S = 2.0
# Longer than nginx's upstream keepalive_timeout (2 s, nginx/*.conf and deploy.py).
KEEPALIVE_GRACE_S = 3.0


class PortInUse(OSError):
    pass


def redis_clients(redis_url: str) -> tuple[aioredis.Redis, aioredis.Redis]:
    """(commands client, pub/sub client).

    Commands retry briefly so a blip is invisible but a dead Redis answers 503 fast.
    The pub/sub client must not retry: redis-py would resubscribe silently and we would
    skip the resync that recovers messages lost meanwhile.
    """
    commands = aioredis.Redis.from_url(
        redis_url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=10,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), 2))
    pubsub = aioredis.Redis.from_url(
        redis_url, socket_connect_timeout=2, health_check_interval=10, retry=Retry(NoBackoff(), 0))
    return commands, pubsub


def build_services(settings: Settings) -> tuple[Services, aioredis.Redis]:
    catalog = Catalog.load(settings.catalog_path)
    commands, pubsub = redis_clients(settings.redis_url)
    store = InventoryStore(commands, catalog, settings.hold_ttl_s)
    hub = LiveHub(settings.instance_id)
    feed = InventoryFeed(pubsub, store, hub)
    metrics = Metrics()
    upstream = Upstream(settings.upstream_url, settings.upstream_kind, settings.upstream_timeout_s,
                        observe=lambda outcome, seconds:
                        metrics.upstream_seconds.labels(outcome).observe(seconds))
    search = SearchCache(commands, upstream,
                         fresh_s=settings.search_fresh_s, stale_s=settings.search_stale_s,
                         upstream_timeout_s=settings.upstream_timeout_s)
    return Services(settings, catalog, commands, store, hub, feed, search=search,
                    metrics=metrics), pubsub


async def run_instance(settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT, then drain within settings.drain_s."""
    if settings.cookie_secret_is_random:
        log.warning("BB_COOKIE_SECRET is not set: using a random one; instances will not "
                    "accept each other's sessions. Set BB_COOKIE_SECRET for a cluster.")
    services, pubsub_redis = build_services(settings)
    try:
        sockets = bind_sockets(settings.port, settings.host)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(f"port {settings.port} on {settings.host} is already in use: stop "
                            f"what uses it or choose another with --port") from None
        raise
    server = HTTPServer(make_app(services), max_body_size=SERVER_MAX_BODY_BYTES)
    server.add_sockets(sockets)
    tasks = [
        asyncio.create_task(services.feed.run(), name="inventory-feed"),
        asyncio.create_task(every(settings.sweep_interval_s, services.store.sweep, log,
                                  "hold sweeper"), name="hold-sweeper"),
        asyncio.create_task(every(KEEPALIVE_INTERVAL_S, keep_sockets_alive(services.hub), log,
                                  "socket keep-alive"), name="socket-keepalive"),
        asyncio.create_task(every(keys.HEARTBEAT_INTERVAL_S,
                                  functools.partial(send_heartbeat, services, time.time()), log,
                                  "heartbeat"), name="heartbeat"),
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info("instance %s listening on http://%s:%d (Redis %s)", settings.instance_id,
             settings.host, settings.port, settings.redis_url)
    await stop.wait()
    await drain(services, server, settings.drain_s)
    for task in tasks:
        task.cancel()
    _, stuck = await asyncio.wait(tasks, timeout=TASK_STOP_TIMEOUT_S)
    if stuck:
        log.warning("background task(s) %s did not stop in time",
                    ", ".join(task.get_name() for task in stuck))
    await services.search.aclose()  # background refreshes and the upstream HTTP client
    try:  # tell the cluster at once rather than when the heartbeat expires
        await services.redis.delete(keys.heartbeat_key(settings.instance_id))
    except (RedisError, OSError):
        pass
    await services.redis.aclose()
    await pubsub_redis.aclose()
    log.info("instance %s stopped", settings.instance_id)


def keep_sockets_alive(hub: LiveHub):
    async def step() -> None:
        closed = ping_sockets(hub)
        if closed:
            log.info("closed %d WebSocket(s) that stopped answering pings", closed)
    return step


async def drain(services: Services, server: HTTPServer, drain_s: float) -> None:
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
        # Tornado's own set of open HTTP connections (WebSockets included until closed)
        open_connections = len(getattr(server, "_connections", ()))
        return services.inflight > 0 or (open_connections > 0 and elapsed_s() < KEEPALIVE_GRACE_S)
    while busy() and elapsed_s() < drain_s:
        services.hub.release_all()
        await asyncio.sleep(0.05)
    if services.inflight:
        log.warning("drain time (%.1fs) over with %d request(s) still in flight",
                    drain_s, services.inflight)
    remaining_s = max(0.1, drain_s - elapsed_s())
    try:
        await asyncio.wait_for(server.close_all_connections(), timeout=remaining_s)
    except asyncio.TimeoutError:
        log.warning("some connections did not close within the drain time")
    log.info("drained in %.2fs", elapsed_s())
