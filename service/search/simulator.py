"""A stand-in for the seed's search API, for the demo, the tests and `make bench-seed`.

    python -m service upstream-sim --port 9000 [--latency-ms 300] [--error-rate 0.1]

    GET  /search.json?q=&result_type=recent&rpp=100   Twitter v1 search shape (the seed's)
    GET  /api/v1/timelines/tag/<tag>?limit=40          Mastodon tag timeline shape
    GET  /stats                 {"requests": {"<q>": n, ...}, "total": n}
    POST /stats/reset           zero the counters
    GET  /control               the current failure mode
    POST /control               {"mode": "ok"|"500"|"timeout"|"malformed"|"empty",
                                 "extra_latency_ms": N}: fail, hang or answer garbage from
                                 now on, without a restart

Each query has its own steady post rate, from a hash of the query: log-uniform between
0.05 and 50 posts per second, so different queries give different rates and the same
query always the same one. Posts sit on a grid of 1/rate seconds ending at the present
second, newest first, so two fetches a moment apart see (nearly) the same posts.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import hashlib
import json
import logging
import math
import random
import signal
from collections.abc import Callable
from typing import Any

import tornado.web
from tornado.httpserver import HTTPServer

from service.listen import listen
from service.search.adapters import MAX_RESULTS_PER_PAGE

log = logging.getLogger(__name__)

MIN_RATE, MAX_RATE = 0.05, 50.0
MODES = ("ok", "500", "timeout", "malformed", "empty")
HANG_S = 600  # "timeout" mode holds a request this long, or until the client goes away
MAX_TRACKED_QUERIES = 100_000  # beyond this, requests are counted under OTHER
OTHER = "(other)"
DEFAULT_RPP = 15  # what Twitter's v1 search gave without rpp
MASTODON_MAX_LIMIT = 40


def rate_for(query: str) -> float:
    """The simulated posts per second for `query` (stable, log-uniform in 0.05..50)."""
    fraction = int.from_bytes(hashlib.sha256(query.encode()).digest()[:8], "big") / 2 ** 64
    return math.exp(math.log(MIN_RATE) + fraction * (math.log(MAX_RATE) - math.log(MIN_RATE)))


def post_times(query: str, count: int, now: float) -> list[float]:
    """Epoch seconds of the `count` most recent posts for `query`, newest first."""
    interval = 1.0 / rate_for(query)
    newest = math.floor(now / interval) * interval
    return [newest - i * interval for i in range(count)]


class SimState:
    def __init__(self, latency_ms: float, error_rate: float):
        self.latency_ms = latency_ms
        self.error_rate = error_rate
        self.mode = "ok"
        self.extra_latency_ms = 0.0
        self.requests: dict[str, int] = {}
        self.total = 0

    def count(self, query: str) -> None:
        if query not in self.requests and len(self.requests) >= MAX_TRACKED_QUERIES:
            query = OTHER
        self.requests[query] = self.requests.get(query, 0) + 1
        self.total += 1


class SimHandler(tornado.web.RequestHandler):
    _gone: asyncio.Event | None = None

    @property
    def state(self) -> SimState:
        state: SimState = self.application.settings["state"]
        return state

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(data))

    def on_connection_close(self) -> None:
        if self._gone is not None:
            self._gone.set()

    async def answer(self, query: str, body: Callable[[bool], Any]) -> None:
        """Count the request, then answer `body()` as the failure mode and latency say.

        The answer is made first and sent `latency` after the request arrived, so the
        latency is what a client sees, however many requests arrive together.
        """
        state = self.state
        state.count(query)
        if state.mode == "500" or (state.error_rate and random.random() < state.error_rate):
            status, payload = 500, json.dumps({"error": "simulated upstream failure"}).encode()
        elif state.mode == "malformed":
            status, payload = 200, b'{"results": [{"created_at": "Sat, 28 No'  # cut off
        else:
            status, payload = 200, json.dumps(body(state.mode == "empty")).encode()
        delay_s = (state.latency_ms + state.extra_latency_ms) / 1000 - self.request.request_time()
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        if state.mode == "timeout":
            self._gone = asyncio.Event()
            try:
                await asyncio.wait_for(self._gone.wait(), HANG_S)
            except TimeoutError:
                pass
            return
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(payload)


class TwitterSearchHandler(SimHandler):
    async def get(self) -> None:
        query = self.get_query_argument("q", "")
        try:
            rpp = int(self.get_query_argument("rpp", str(DEFAULT_RPP)))
        except ValueError:
            rpp = -1
        if not query or not 1 <= rpp <= MAX_RESULTS_PER_PAGE:
            self.write_json({"error": f"q is required and rpp must be 1..{MAX_RESULTS_PER_PAGE}"},
                            status=400)
            return

        def body(empty: bool) -> Any:
            now = datetime.datetime.now(datetime.UTC).timestamp()
            times = [] if empty else post_times(query, rpp, now)
            return {"results": [_tweet(query, t) for t in times], "query": query,
                    "results_per_page": rpp}
        await self.answer(query, body)


class MastodonTagHandler(SimHandler):
    async def get(self, tag: str) -> None:
        try:
            limit = min(int(self.get_query_argument("limit", "20")), MASTODON_MAX_LIMIT)
        except ValueError:
            limit = 20

        def body(empty: bool) -> Any:
            now = datetime.datetime.now(datetime.UTC).timestamp()
            times = [] if empty else post_times(tag, max(limit, 1), now)
            return [_status(tag, t) for t in times]
        await self.answer(tag, body)


def _tweet(query: str, at: float) -> dict[str, Any]:
    moment = datetime.datetime.fromtimestamp(int(at), datetime.UTC)
    post_id = int(at * 1000)
    return {"created_at": email.utils.format_datetime(moment),  # Sat, 28 Nov 2026 03:54:51 +0000
            "text": f"simulated post about {query}", "from_user": f"user{post_id % 997}",
            "id": post_id, "id_str": str(post_id)}


def _status(tag: str, at: float) -> dict[str, Any]:
    moment = datetime.datetime.fromtimestamp(at, datetime.UTC)
    post_id = str(int(at * 1000))
    return {"id": post_id,
            "created_at": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "content": f"<p>simulated post about <a href=\"#\">#{tag}</a></p>",
            "account": {"id": str(int(post_id) % 997), "acct": f"user{int(post_id) % 997}"}}


class StatsHandler(SimHandler):
    def get(self) -> None:
        self.write_json({"requests": self.state.requests, "total": self.state.total})


class StatsResetHandler(SimHandler):
    def post(self) -> None:
        self.state.requests.clear()
        self.state.total = 0
        self.write_json({"requests": {}, "total": 0})


class ControlHandler(SimHandler):
    def get(self) -> None:
        self._current()

    def post(self) -> None:
        try:
            body = json.loads(self.request.body or b"{}")
            mode = body.get("mode", self.state.mode)
            extra_ms = float(body.get("extra_latency_ms", self.state.extra_latency_ms))
        except (ValueError, TypeError, AttributeError):
            self.write_json({"error": "expected JSON like {\"mode\": \"500\", "
                                      "\"extra_latency_ms\": 0}"}, status=400)
            return
        if mode not in MODES or not 0 <= extra_ms <= HANG_S * 1000:
            self.write_json({"error": f"mode must be one of {', '.join(MODES)}; "
                                      f"extra_latency_ms 0..{HANG_S * 1000}"}, status=400)
            return
        self.state.mode, self.state.extra_latency_ms = mode, extra_ms
        log.info("control: mode=%s extra_latency_ms=%g", mode, extra_ms)
        self._current()

    def _current(self) -> None:
        self.write_json({"mode": self.state.mode, "extra_latency_ms": self.state.extra_latency_ms,
                         "latency_ms": self.state.latency_ms, "error_rate": self.state.error_rate})


def make_sim_app(latency_ms: float = 0.0, error_rate: float = 0.0) -> tornado.web.Application:
    return tornado.web.Application([
        (r"/search\.json", TwitterSearchHandler),
        (r"/api/v1/timelines/tag/([^/]+)", MastodonTagHandler),
        (r"/stats", StatsHandler),
        (r"/stats/reset", StatsResetHandler),
        (r"/control", ControlHandler),
    ], state=SimState(latency_ms, error_rate),
        # one log line per request would cost the benchmark more than the answer does
        log_function=_log_failures)


def _log_failures(handler: tornado.web.RequestHandler) -> None:
    if handler.get_status() >= 400:
        log.info("%d %s %s", handler.get_status(), handler.request.method, handler.request.uri)


async def run(host: str, port: int, latency_ms: float, error_rate: float) -> None:
    """Serve until SIGTERM/SIGINT."""
    sockets = listen(port, host, "choose another with --port")
    server = HTTPServer(make_sim_app(latency_ms, error_rate))
    server.add_sockets(sockets)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info("upstream simulator on http://%s:%d (latency %g ms, error rate %g)", host, port,
             latency_ms, error_rate)
    await stop.wait()
    server.stop()
    log.info("upstream simulator stopped")
