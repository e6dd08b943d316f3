"""Bench-only naive baseline: the textbook per-client `write_message` loop.

Same URL, same Redis channel, same JSON as the real service, same Tornado WebSocket
settings (ping interval/timeout, max message size), but on each pub/sub message it does
what the issue measured:

    for s in sockets: s.write_message(json.dumps({...}))

i.e. one json.dumps, one frame build and one asyncio Task (Tornado's write_message
wrapper) per client per change. Used only by bench/fanout.py --baseline.

    python bench/naive_server.py --port P     (env: BB_REDIS_URL, BB_INSTANCE_ID)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal

import redis.asyncio as aioredis
import tornado.web
import tornado.websocket
from tornado.httpserver import HTTPServer

from service import redis_keys as keys
from service.inventory import InventoryStore, Snapshot
from service.inventory.catalog import Catalog
from service.paths import DEFAULT_CATALOG
from service.web.limits import MAX_WS_MESSAGE_BYTES

log = logging.getLogger("naive")


class State:
    instance_id = "naive"
    latest: dict[str, Snapshot] = {}
    sockets: set[StatusSocket] = set()
    subscribed = False


class StatusSocket(tornado.websocket.WebSocketHandler):
    def open(self):
        self.sku = self.get_query_argument("sku", "internet")
        State.sockets.add(self)
        snap = State.latest.get(self.sku)
        if snap is not None:
            self.write_message(json.dumps({**snap.as_dict(), "instance": State.instance_id}))

    def on_message(self, message):
        pass

    def on_close(self):
        State.sockets.discard(self)


class Ready(tornado.web.RequestHandler):
    def get(self):
        self.set_status(200 if State.subscribed else 503)
        self.finish({"ready": State.subscribed})


async def relay(redis_url: str) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    store = InventoryStore(redis, Catalog.load(DEFAULT_CATALOG), 900)
    pubsub = redis.pubsub()
    await pubsub.ssubscribe(*(keys.changes_channel(sku) for sku in store.catalog.skus))
    await store.seed()
    for snap in await store.snapshots(store.catalog.skus):
        State.latest[snap.sku] = snap
    State.subscribed = True
    while True:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
        if message is None or message.get("type") != "smessage":
            continue
        snap = Snapshot.from_message(message["data"])
        State.latest[snap.sku] = snap
        for s in list(State.sockets):
            if s.sku != snap.sku:
                continue
            try:
                s.write_message(json.dumps({**snap.as_dict(), "instance": State.instance_id}))
            except tornado.websocket.WebSocketClosedError:
                pass


async def main(port: int) -> None:
    State.instance_id = os.environ.get("BB_INSTANCE_ID", f"naive-{port}")
    app = tornado.web.Application(
        [(r"/cart/status", StatusSocket), (r"/readyz", Ready)],
        websocket_max_message_size=MAX_WS_MESSAGE_BYTES,
        websocket_ping_interval=30, websocket_ping_timeout=60)
    server = HTTPServer(app)
    server.listen(port, "127.0.0.1")
    task = asyncio.create_task(relay(os.environ.get("BB_REDIS_URL", "redis://127.0.0.1:6379/0")))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info("naive baseline %s on 127.0.0.1:%d", State.instance_id, port)
    await stop.wait()
    server.stop()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s [naive] %(name)s: %(message)s")
    asyncio.run(main(args.port))
