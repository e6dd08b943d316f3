"""Watchers: WebSocket and long-poll clients that hold live counts and time deliveries."""

from __future__ import annotations

import json
import random
from urllib.parse import urlencode, urlsplit

import gevent
import websocket
from locust import User, constant, task

from service.load.addresses import connected_socket, is_loopback_host, next_address
from service.load.client import Run, ShopHttpUser, deliver, ids, now_holds
from service.load.outcomes import Outcome
from service.load.records import Watcher

WATCHED_SKUS = (1, 8)  # a watcher watches between 1 and 8 books (a page's worth at most)
# a socket silent for two and a quarter of the shop's heartbeats counts as dropped, as the
# page counts it (static/js/shop/connection.js)
SILENT_HEARTBEATS = 2.25
RECONNECT_JITTER_S = 0.25  # the page's first backoff step (static/js/shop/timing.js)


class LongPollWatcher(ShopHttpUser):
    """Polls /cart/status with `since` cursors the way the page does, giving a poll up
    after the shop's default hold time (25 s) and a margin, as the page does."""

    wait_time = constant(0)
    network_timeout = 25.0 + 5.0  # set from the shop's hold at the test's start

    def on_start(self) -> None:
        super().on_start()
        popularity = Run.catalog(str(self.host))
        self.skus = popularity.pick_distinct(self.rng, self.rng.randint(*WATCHED_SKUS))
        self.watcher = Run.records.watchers[self.client_id] = Watcher("longpoll", self.skus)
        self.cursors: dict[str, tuple[str, int]] = {}
        self.failures = 0

    @task
    def poll(self) -> None:
        query = [("sku", sku) for sku in self.skus]
        # the first poll asks for the current state at once (a bare version 0 is behind
        # every snapshot), as the page does; a poll without `since` would wait for a change
        query.append(("since", ",".join("{}:{}".format(*self.cursors[s]) if s in self.cursors
                                        else "0" for s in self.skus)))
        reply = self.call("lp poll", "GET", "/cart/status?" + urlencode(query),
                          name="/cart/status")
        if reply is None or reply.status_code != 200:
            self.failures += 1
            gevent.sleep(min(5.0, 0.25 * 2 ** min(self.failures, 5)) * self.rng.random())
            return
        self.failures = 0
        arrived_ms = Run.now_ms()
        body = reply.json()
        self.watcher.connected = True
        self.watcher.instance = reply.headers.get("X-Instance", "")
        for snapshot in body.get("books", [body]):
            sku = snapshot["sku"]
            before = self.cursors.get(sku)
            news = Run.records.saw(self.client_id, snapshot)
            self.cursors[sku] = (snapshot["epoch"], int(snapshot["version"]))
            if news:
                now_holds(self.client_id, snapshot, arrived_ms)
            if news and before is not None and snapshot.get("changedAt"):
                self.watcher.deliveries += 1
                deliver(self.environment, "LP", arrived_ms - snapshot["changedAt"],
                        len(reply.content))


class WebSocketWatcher(User):
    """Watches books over a WebSocket (as the catalog page does) and stays connected,
    reconnecting with backoff when dropped."""

    wait_time = constant(0)

    def on_start(self) -> None:
        self.rng = random.Random()
        self.client_id = f"{type(self).__name__}-{Run.process_index}-{next(ids)}"
        popularity = Run.catalog(str(self.host))
        self.skus = popularity.pick_distinct(self.rng, self.rng.randint(*WATCHED_SKUS))
        self.watcher = Run.records.watchers[self.client_id] = Watcher("websocket", self.skus)
        target = urlsplit(str(self.host))
        self.address = (next_address(Run.process_index)
                        if Run.bind_sources and is_loopback_host(target.hostname or "") else None)
        self.ws: websocket.WebSocket | None = None
        self.opening: set[str] = set()
        self.failures = 0

    def connect(self) -> None:
        target = urlsplit(str(self.host))
        url = (f"ws://{target.netloc}/cart/status?"
               + urlencode([*[("sku", sku) for sku in self.skus], ("heartbeat", "1")]))
        try:
            sock = connected_socket(target.hostname or "127.0.0.1", target.port or 80,
                                    self.address, timeout_s=10)
            # frames are ours and JSON: validating their UTF-8 in Python costs the
            # generator more than parsing them
            self.ws = websocket.create_connection(url, socket=sock, timeout=10,
                                                  skip_utf8_validation=True)
        except (OSError, websocket.WebSocketException) as exc:
            Run.records.outcome("ws connect", Outcome.FAILED, None)
            self.failures += 1
            self.environment.events.request.fire(
                request_type="WS", name="connect", response_time=0, response_length=0,
                exception=exc, context={})
            gevent.sleep(min(10.0, 0.25 * 2 ** min(self.failures, 6)) * self.rng.random())
            return
        self.failures = 0
        self.opening = set(self.skus)
        self.watcher.connected = True
        self.ws.settimeout(Run.heartbeat_s * SILENT_HEARTBEATS)

    @task
    def listen(self) -> None:
        if self.ws is None:
            self.connect()
            return
        try:
            raw = self.ws.recv()
        except (OSError, websocket.WebSocketException):
            # dropped, or silent past the heartbeats (hung or gone, as the page judges)
            self.dropped()
            return
        if not raw:
            self.dropped()
            return
        arrived_ms = Run.now_ms()
        snapshot = json.loads(raw)
        if snapshot.get("type") == "heartbeat":
            return
        sku = snapshot["sku"]
        if sku in self.opening:  # the snapshot a socket gets on open is not a delivery
            self.opening.discard(sku)
            if not self.opening:
                Run.records.outcome("ws connect", Outcome.OK, snapshot.get("instance"))
            self.watcher.instance = snapshot.get("instance", "")
            if Run.records.saw(self.client_id, snapshot):
                now_holds(self.client_id, snapshot, arrived_ms)
            return
        if Run.records.saw(self.client_id, snapshot) and snapshot.get("changedAt"):
            now_holds(self.client_id, snapshot, arrived_ms)
            self.watcher.deliveries += 1
            deliver(self.environment, "WS", arrived_ms - snapshot["changedAt"], len(raw))

    def dropped(self) -> None:
        """Reconnect as the page does after a live socket dropped: after a jittered pause
        of up to 250 ms, so the sockets of a stopped server do not all return at once."""
        if self.ws is not None:
            self.ws.close(timeout=0)
        self.ws = None
        gevent.sleep(RECONNECT_JITTER_S * self.rng.random())

    def on_stop(self) -> None:
        if self.ws is not None:
            self.ws.close()
