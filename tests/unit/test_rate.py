"""Tweets per second: the seed's arithmetic, the two upstream adapters, and the fetch
against small real HTTP servers in this process (Twitter v1 shape, Mastodon's shape,
one that fails, one that hangs)."""

from __future__ import annotations

import asyncio
import datetime
import json
import socket

import pytest
import tornado.web
from tornado.httpserver import HTTPServer

from service.search import simulator as upstream_sim
from service.search.adapters import Mastodon, TwitterV1, parse_created_at, result_from
from service.search.result import (
    QueryNotSupported,
    SearchResult,
    UpstreamError,
    UpstreamMalformed,
    UpstreamTimeout,
    UpstreamUnreachable,
    tweets_per_second,
)
from service.search.upstream import Upstream, search_blocking

pytestmark = pytest.mark.timeout(30)


def epoch(text: str) -> float:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.UTC).timestamp()


# --------------------------------------------------------------------------- arithmetic

def test_rate_is_count_over_seconds_since_the_oldest():
    now = epoch("2026-11-28T03:55:41")
    assert tweets_per_second(100, epoch("2026-11-28T03:54:51"), now) == 2.0


def test_rate_uses_whole_seconds_like_the_seed():
    # mktime(timetuple()) drops fractions: 1000.9 - 990.1 counts as 1000 - 990 = 10 s
    assert tweets_per_second(5, 990.1, 1000.9) == 0.5


def test_empty_result_is_a_rate_of_zero():
    assert tweets_per_second(0, None, 1000.0) == 0.0
    assert result_from(TwitterV1(), "pants", b'{"results": []}', 1000.0, 0.1) == \
        SearchResult("pants", 0, None, 1000.0, 0.1, 0.0)


@pytest.mark.parametrize("oldest", [1000.0, 1000.7, 1003.0])
def test_zero_or_negative_span_counts_as_one_second(oldest):
    # same second as now (the seed divides by zero), or a clock skewed into the future
    assert tweets_per_second(7, oldest, 1000.2) == 7.0


# --------------------------------------------------------------------------- adapters

def test_twitter_v1_reads_the_seeds_shape():
    body = json.dumps({"results": [
        {"created_at": "Sat, 28 Nov 2026 03:54:51 +0000", "text": "a", "from_user": "u", "id": 2},
        {"created_at": "Sat, 28 Nov 2026 03:54:41 +0000", "text": "b", "from_user": "v", "id": 1},
    ]}).encode()
    assert TwitterV1().timestamps(body) == [epoch("2026-11-28T03:54:51"),
                                            epoch("2026-11-28T03:54:41")]
    result = result_from(TwitterV1(), "pants", body, epoch("2026-11-28T03:55:01"), 0.3)
    assert (result.result_count, result.oldest, result.tweets_per_second) == \
        (2, epoch("2026-11-28T03:54:41"), 0.1)


@pytest.mark.parametrize("raw, expected", [
    ("Sat, 28 Nov 2026 03:54:51 +0000", "2026-11-28T03:54:51"),
    ("Sat, 28 Nov 2026 05:54:51 +0200", "2026-11-28T03:54:51"),
    ("Fri, 27 Nov 2026 23:24:51 -0430", "2026-11-28T03:54:51"),
    ("28 Nov 2026 03:54:51 +0000", "2026-11-28T03:54:51"),
    ("Sat, 28 Nov 2026 03:54:51 GMT", "2026-11-28T03:54:51"),
])
def test_created_at_spellings(raw, expected):
    assert parse_created_at(raw) == epoch(expected)


def test_twitter_v1_url_asks_for_100_recent_posts_and_escapes_the_query():
    url = TwitterV1().url("http://127.0.0.1:9000", "pants & shirts")
    assert url == "http://127.0.0.1:9000/search.json?q=pants+%26+shirts&result_type=recent&rpp=100"


@pytest.mark.parametrize("body", [
    b"<html>busy</html>",
    b'{"results": [{"created_at": "Sat, 28 No',
    b'{"statuses": []}',
    b'{"results": {"created_at": "Sat, 28 Nov 2026 03:54:51 +0000"}}',
    b'[]',
    b'{"results": [{"text": "no date"}]}',
    b'{"results": [{"created_at": "yesterday"}]}',
    b'{"results": [{"created_at": "Sat, 31 Feb 2026 03:54:51 +0000"}]}',
    b'{"results": [{"created_at": "Sat, 28 Nov 2026 03:54:51 +0000"}, {"created_at": null}]}',
    b'{"results": ["Sat, 28 Nov 2026 03:54:51 +0000"]}',
    b'\xff\xfe',
])
def test_twitter_v1_malformed_bodies(body):
    with pytest.raises(UpstreamMalformed):
        TwitterV1().timestamps(body)


def test_mastodon_reads_iso_timestamps():
    body = json.dumps([{"id": "2", "created_at": "2026-11-28T03:54:51.000Z", "content": "<p>x</p>",
                        "account": {"acct": "a"}},
                       {"id": "1", "created_at": "2026-11-28T03:54:31.500Z", "content": "<p>y</p>",
                        "account": {"acct": "b"}}]).encode()
    assert Mastodon().timestamps(body) == [epoch("2026-11-28T03:54:51"),
                                           epoch("2026-11-28T03:54:31.5")]


@pytest.mark.parametrize("body", [b'{"error": "Record not found"}', b'[{"id": "1"}]',
                                  b'[{"created_at": "28/11/2026"}]', b"nope"])
def test_mastodon_malformed_bodies(body):
    with pytest.raises(UpstreamMalformed):
        Mastodon().timestamps(body)


def test_mastodon_takes_one_hashtag():
    adapter = Mastodon()
    for good in ("tornado", "#tornado", "café_2026"):
        adapter.check_query(good)
    assert adapter.url("http://m.local", "#café") == \
        "http://m.local/api/v1/timelines/tag/caf%C3%A9?limit=40"
    for bad in ("two words", "a/b", "#", "tag?x=1"):
        with pytest.raises(QueryNotSupported):
            adapter.check_query(bad)


def test_cached_forms_round_trip():
    result = SearchResult("pants", 3, 990.0, 1000.5, 0.25, 0.3)
    assert SearchResult.from_json(result.to_json()) == result
    with pytest.raises(ValueError):
        SearchResult.from_json('{"q": "pants"}')
    with pytest.raises(ValueError):
        SearchResult.from_json("not json")
    error = UpstreamError.from_json(UpstreamTimeout("slow").to_json())
    assert type(error) is UpstreamTimeout and error.message == "slow" and error.status == 504
    assert type(UpstreamError.from_json(b"garbage")) is UpstreamError


# --------------------------------------------------------------------------- fetching

class Served:
    """A tiny upstream on a free loopback port: `routes` map a path to (status, body)."""

    def __init__(self, routes: dict[str, tuple[int, bytes]], hang: bool = False):
        self.routes = routes
        self.hang = hang
        self.seen: list[str] = []
        served = self

        class Handler(tornado.web.RequestHandler):
            async def get(self):
                served.seen.append(self.request.uri)
                if served.hang:
                    await asyncio.sleep(1)
                    return
                status, body = served.routes.get(self.request.path, (404, b'{"error": "?"}'))
                self.set_status(status)
                self.set_header("Content-Type", "application/json")
                self.finish(body)

        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.setblocking(False)
        self.server = HTTPServer(tornado.web.Application([(r"/.*", Handler)]))
        self.server.add_sockets([self.listener])
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def close(self):
        self.server.stop()


@pytest.fixture
def serve():
    started = []

    def start(routes, hang=False):
        started.append(Served(routes, hang))
        return started[-1]
    yield start
    for served in started:
        served.close()


def mastodon_statuses(*created: str) -> bytes:
    """Statuses as Mastodon's API documents them (GET /api/v1/timelines/tag/:hashtag)."""
    return json.dumps([{
        "id": str(103270115826048975 + i), "created_at": stamp, "in_reply_to_id": None,
        "sensitive": False, "spoiler_text": "", "visibility": "public", "language": "en",
        "uri": f"https://mastodon.invalid/users/a/statuses/{i}", "url": None,
        "replies_count": 0, "reblogs_count": 0, "favourites_count": 0,
        "content": "<p>about <a href=\"#\">#tornado</a></p>", "reblog": None,
        "account": {"id": "1", "username": "a", "acct": "a", "display_name": "A"},
        "media_attachments": [], "mentions": [], "tags": [{"name": "tornado", "url": ""}],
        "emojis": [], "card": None, "poll": None,
    } for i, stamp in enumerate(created)]).encode()


async def test_mastodon_adapter_against_a_mastodon_shaped_server(serve):
    now = datetime.datetime.now(datetime.UTC)
    stamps = [(now - datetime.timedelta(seconds=s)).isoformat(timespec="milliseconds")
              .replace("+00:00", "Z") for s in (1, 20, 40)]
    served = serve({"/api/v1/timelines/tag/tornado": (200, mastodon_statuses(*stamps))})
    upstream = Upstream(served.url, "mastodon", timeout_s=2)
    try:
        result = await upstream.search("#tornado")
    finally:
        await upstream.aclose()
    assert served.seen == ["/api/v1/timelines/tag/tornado?limit=40"]
    assert result.result_count == 3
    assert result.oldest == pytest.approx(epoch(stamps[-1][:-1]))
    assert result.tweets_per_second == tweets_per_second(3, result.oldest, result.fetched_at)
    assert 3 / 42 <= result.tweets_per_second <= 3 / 39


async def test_twitter_v1_against_the_simulators_answer(serve):
    sim_body = json.dumps({"results": [
        upstream_sim._tweet("pants", t) for t in upstream_sim.post_times(
            "pants", 100, datetime.datetime.now(datetime.UTC).timestamp())]}).encode()
    served = serve({"/search.json": (200, sim_body)})
    upstream = Upstream(served.url, "twitter-v1", timeout_s=2)
    try:
        result = await upstream.search("pants")
    finally:
        await upstream.aclose()
    assert served.seen == ["/search.json?q=pants&result_type=recent&rpp=100"]
    assert result.result_count == 100 and result.tweets_per_second > 0


@pytest.mark.parametrize("status, kind", [(500, UpstreamError), (503, UpstreamError),
                                          (404, UpstreamError), (200, UpstreamMalformed)])
async def test_bad_answers_raise_502_kinds(serve, status, kind):
    served = serve({"/search.json": (status, b"<html>down</html>")})
    upstream = Upstream(served.url, "twitter-v1", timeout_s=2)
    try:
        with pytest.raises(kind) as raised:
            await upstream.search("pants")
    finally:
        await upstream.aclose()
    assert raised.value.status == 502


async def test_a_hanging_upstream_times_out_as_504(serve):
    served = serve({}, hang=True)
    upstream = Upstream(served.url, "twitter-v1", timeout_s=0.3)
    try:
        with pytest.raises(UpstreamTimeout) as raised:
            await upstream.search("pants")
    finally:
        await upstream.aclose()
    assert raised.value.status == 504 and raised.value.code == "upstream_timeout"


async def test_nothing_listening_is_unreachable():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: connections are refused
        upstream = Upstream(f"http://127.0.0.1:{port}", "twitter-v1", timeout_s=2)
        try:
            with pytest.raises(UpstreamUnreachable) as raised:
                await upstream.search("pants")
        finally:
            await upstream.aclose()
    assert raised.value.status == 502 and raised.value.code == "upstream_unreachable"


async def test_blocking_fetch_of_the_demo(serve):
    served = serve({"/search.json": (200, b'{"results": []}')})
    upstream = Upstream(served.url, "twitter-v1", timeout_s=2)
    # it blocks its thread, so run it off the loop that serves the fake upstream
    result = await asyncio.to_thread(search_blocking, upstream, "pants")
    assert (result.result_count, result.tweets_per_second) == (0, 0.0)
    served.routes["/search.json"] = (500, b"{}")
    with pytest.raises(UpstreamError):
        await asyncio.to_thread(search_blocking, upstream, "pants")
    served.hang = True
    upstream.timeout_s = 0.3
    with pytest.raises(UpstreamTimeout):
        await asyncio.to_thread(search_blocking, upstream, "pants")


# --------------------------------------------------------------------------- simulator

def test_simulated_rates_are_stable_per_query_and_differ_between_queries():
    rates = {q: upstream_sim.rate_for(q) for q in ("pants", "tornado", "redis", "python")}
    assert rates == {q: upstream_sim.rate_for(q) for q in rates}
    assert len(set(rates.values())) == len(rates)
    assert all(upstream_sim.MIN_RATE <= r <= upstream_sim.MAX_RATE for r in rates.values())


def test_simulated_posts_are_newest_first_and_in_the_past():
    now = 1_800_000_000.5
    times = upstream_sim.post_times("pants", 100, now)
    assert len(times) == 100 and times == sorted(times, reverse=True) and times[0] <= now
    # the seed's arithmetic on them gives back the query's rate (to within a post)
    rate = upstream_sim.rate_for("pants")
    assert tweets_per_second(100, times[-1], now) == pytest.approx(rate, rel=0.05, abs=0.6)
