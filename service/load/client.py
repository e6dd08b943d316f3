"""What the virtual users of one load process share: the run's timeline and records,
the shop's catalog, and an HTTP user that classifies every answer.

Imported only inside Locust (it patches the process with gevent); the judge never
imports the user modules.
"""

from __future__ import annotations

import itertools
import random
import time
from typing import Any
from urllib.parse import urlsplit

from gevent.lock import Semaphore
from locust import FastHttpUser

from service.load.addresses import bind_fast_client, is_loopback_host, next_address
from service.load.outcomes import Outcome, classify
from service.load.popularity import Popularity
from service.load.records import Records
from service.load.shop import all_books, page_timing

ids = itertools.count(1)


class Run:
    """What the users of this load process share: records, catalog, timeline."""

    records = Records()
    process_index = 0
    started_s = time.time()
    load_s = float("inf")
    settle_s = 0.0
    clock_offset_ms = 0.0  # added to local time to get the shop's (Redis) clock
    bind_sources = False
    skus: list[str] = []
    popularity: Popularity | None = None
    sold_out: set[str] = set()
    _catalog_lock = Semaphore()

    @classmethod
    def loading(cls) -> bool:
        """Whether shoppers may still change carts (afterwards the watchers settle)."""
        return time.time() < cls.started_s + cls.load_s

    @classmethod
    def now_ms(cls) -> float:
        return time.time() * 1000 + cls.clock_offset_ms

    heartbeat_s = 2.0  # the shop's, from its page: a socket silent 2.5 times this is dropped
    longpoll_s = 25.0  # the shop's long-poll hold: a poll unanswered past it + 5 s is given up

    @classmethod
    def learn_timing(cls, host: str) -> None:
        """Take the shop's heartbeat and long-poll timing, as its pages do."""
        cls.heartbeat_s, cls.longpoll_s = page_timing(host.rstrip("/"))

    @classmethod
    def catalog(cls, host: str) -> Popularity:
        """Every SKU the shop lists, read once per process: at the test's start, before
        any user (and outside the figures), or by the first user that needs it."""
        with cls._catalog_lock:
            if cls.popularity is None:
                books, _ = all_books(host.rstrip("/"))
                cls.skus = [book["sku"] for book in books]
                cls.popularity = Popularity(cls.skus)
            return cls.popularity


class ShopHttpUser(FastHttpUser):
    """A client of the shop over HTTP, from its own source address on loopback.

    FastHttpUser (geventhttpclient) costs the load generator a fraction of the CPU per
    request that requests does; on a machine shared with the shop that is capacity."""

    abstract = True
    network_timeout = 65.0  # above the long-poll hold and nginx's read timeout
    connection_timeout = 10.0

    def on_start(self) -> None:
        self.rng = random.Random()
        self.client_id = f"{type(self).__name__}-{Run.process_index}-{next(ids)}"
        if Run.bind_sources and is_loopback_host(urlsplit(str(self.host)).hostname or ""):
            bind_fast_client(self.client, str(self.host), next_address(Run.process_index))

    def call(self, kind: str, method: str, path: str, name: str | None = None,
             **kwargs: Any) -> Any:
        """One request, its outcome recorded; a connection that closed before any
        response byte is retried once, as browsers do, and the retry's outcome counts.
        Returns the response when it had a status, else None."""
        for attempt in (1, 2):
            with self.client.request(method, path, name=name or path, catch_response=True,
                                     **kwargs) as reply:
                status = reply.status_code or None
                # an answer that never came (refused, reset, timed out) has no headers
                headers = (reply.headers if status else None) or {}
                outcome = classify(status, headers.get("Retry-After"))
                if outcome is Outcome.RETRYABLE and attempt == 2:
                    outcome = Outcome.FAILED
                instance = headers.get("X-Instance")
                Run.records.outcome(kind, outcome, instance)
                if outcome is Outcome.FAILED:
                    reply.failure(f"{kind}: HTTP {status or 'connection closed'}")
                else:
                    reply.success()
                if "X-Server-Time" in headers:
                    Run.records.clock_sample(float(headers["X-Server-Time"]),
                                             time.time() * 1000)
                if outcome is not Outcome.RETRYABLE:
                    return reply if status else None
        return None


def deliver(environment: Any, transport: str, lag_ms: float, size: int) -> None:
    """Report one delivery's lag to Locust as a request of its own ("WS deliver")."""
    environment.events.request.fire(request_type=transport, name="deliver",
                                    response_time=max(0.0, lag_ms), response_length=size,
                                    exception=None, context={})
    if Run.records.timeline is not None:
        Run.records.timeline.delivery(time.time() * 1000, lag_ms)


def now_holds(watcher_id: str, snapshot: dict[str, Any], arrived_ms: float) -> None:
    """For the drills' timeline: the watcher now shows this snapshot's version."""
    if Run.records.timeline is not None:
        Run.records.timeline.holds(watcher_id, snapshot["sku"],
                                   int(snapshot.get("changedAt") or 0), arrived_ms)
