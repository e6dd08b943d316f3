"""Tweets per second across real processes: one redis-server, the upstream simulator and
several app instances sharing the search cache. Upstream request counts come from the
simulator's /stats, so "exactly one upstream request" is what the upstream saw.

Instances (one cluster for the module):
  app-a, app-b  defaults (fresh 30 s), upstream timeout 1.5 s
  app-s         fresh window 1 s, so a value turns stale within a test
  app-d         pointed at a port where nothing listens
  app-m         BB_UPSTREAM_KIND=mastodon, against the simulator's tag timeline
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import time
import uuid
from urllib.parse import quote

import pytest

from service import redis_keys as keys
from service.ops import probes
from service.search.result import query_hash

pytestmark = pytest.mark.timeout(90)

A, B, S, D, M = "app-a", "app-b", "app-s", "app-d", "app-m"
S_FRESH_S = 1
SIM_LATENCY_MS = 100
TIMEOUT_S = 1.5


@pytest.fixture(scope="module", params=["single", "cluster"])
def cluster(request, tmp_path_factory, cluster_class):
    """On one Redis, and on a Redis Cluster (a query's value, lock and error share one
    hash tag, so the lock's transaction runs on one node)."""
    c = cluster_class(tmp_path_factory.mktemp("search"), redis_mode=request.param)
    try:
        c.start_redis()
        sim = c.start_upstream_sim(latency_ms=SIM_LATENCY_MS)
        common = {"BB_UPSTREAM_URL": sim.url, "BB_UPSTREAM_TIMEOUT_S": TIMEOUT_S}
        c.start_apps(A, B, **common)
        c.start_apps(S, BB_SEARCH_FRESH_S=S_FRESH_S, BB_SEARCH_STALE_S=120, **common)
        c.start_apps(D, BB_UPSTREAM_URL=f"http://127.0.0.1:{probes.free_port()}")
        c.start_apps(M, BB_UPSTREAM_KIND="mastodon", **common)
        yield c
    finally:
        c.stop_all()


@pytest.fixture(autouse=True)
def sim(cluster):
    cluster.sim.reset()
    yield cluster.sim
    cluster.sim.reset()


def fresh_query(prefix: str = "pants") -> str:
    """A query no earlier test has cached."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def api(q: str) -> str:
    return f"/api/rate?q={quote(q)}"


def page(q: str) -> str:
    return f"/rate?q={quote(q)}"


HTML = {"Accept": "text/html,application/xhtml+xml"}


async def test_cold_query_on_two_instances_makes_exactly_one_upstream_request(shop, sim):
    q = fresh_query()
    sim.control("ok", extra_latency_ms=400)  # every request arrives while the fetch runs
    replies = await asyncio.gather(*[shop.get(A if i % 2 else B, api(q)) for i in range(50)])
    assert [r.status for r in replies] == [200] * 50
    assert sim.stats() == {q: 1}
    bodies = [r.json() for r in replies]
    states = collections.Counter(b["cache"] for b in bodies)
    assert states["miss"] == 1 and set(states) <= {"miss", "coalesced", "hit"}, states
    # everyone got the one fetch's answer
    assert len({(b["fetchedAt"], b["tweetsPerSecond"], b["resultCount"]) for b in bodies}) == 1
    assert {b["instance"] for b in bodies} == {A, B}
    assert all(r.headers["X-Instance"] == b["instance"] for r, b in zip(replies, bodies))
    # the instance that did not fetch got it from the other one's fetch
    fetcher = next(b["instance"] for b in bodies if b["cache"] == "miss")
    assert any(b["cache"] == "coalesced" for b in bodies if b["instance"] != fetcher)


async def test_fresh_hit_makes_no_upstream_request(shop, sim):
    q = fresh_query()
    first = (await shop.get(A, api(q))).json()
    assert first["cache"] == "miss"
    assert set(first) == {"query", "tweetsPerSecond", "resultCount", "oldest", "fetchedAt",
                          "cache", "instance"}
    assert first["query"] == q and first["resultCount"] == 100 and first["tweetsPerSecond"] > 0
    for name in (B, A, B):
        again = (await shop.get(name, api(q))).json()
        assert again["cache"] == "hit"
        assert (again["fetchedAt"], again["tweetsPerSecond"]) == \
            (first["fetchedAt"], first["tweetsPerSecond"])
    page_reply = await shop.get(A, page(q), headers=HTML)
    assert page_reply.status == 200 and b"from the shared cache" in page_reply.body
    assert sim.stats() == {q: 1}


async def test_different_queries_have_different_rates(shop):
    rates = {(await shop.get(A, api(q))).json()["tweetsPerSecond"]
             for q in ("pants", "tornado", "redis")}
    assert len(rates) == 3


async def wait_until_stale(shop, q: str) -> dict:
    first = (await shop.get(S, api(q))).json()
    assert first["cache"] == "miss"
    # app-s keeps a value fresh for 1 s after its fetch (judged by the same clock as here)
    stale_at = datetime.datetime.fromisoformat(first["fetchedAt"]).timestamp() + S_FRESH_S
    await asyncio.sleep(max(0.0, stale_at - time.time()) + 0.05)
    return first


async def test_stale_value_is_refreshed_once_in_the_background(shop, sim):
    q = fresh_query()
    first = await wait_until_stale(shop, q)
    stale = await asyncio.gather(*[shop.get(S, api(q)) for _ in range(10)])
    assert {r.json()["cache"] for r in stale} == {"stale"}
    assert {r.json()["fetchedAt"] for r in stale} == {first["fetchedAt"]}

    async def refreshed():
        body = (await shop.get(S, api(q))).json()
        return body if body["fetchedAt"] != first["fetchedAt"] else None
    renewed = await shop.poll_until(refreshed, 5, "the background refresh landed")
    assert renewed["cache"] == "hit"
    assert sim.stats() == {q: 2}  # the miss, and one refresh for ten stale answers


@pytest.mark.parametrize("mode", ["500", "timeout"])
async def test_stale_value_is_served_while_the_upstream_is_down(shop, sim, mode):
    q = fresh_query()
    first = await wait_until_stale(shop, q)
    sim.control(mode)
    reply = await shop.get(S, api(q))
    assert reply.status == 200
    body = reply.json()
    assert (body["cache"], body["fetchedAt"], body["tweetsPerSecond"]) == \
        ("stale", first["fetchedAt"], first["tweetsPerSecond"])
    html = await shop.get(S, page(q), headers=HTML)
    assert html.status == 200 and b"stale" in html.body

    error_key = keys.search_error_key(query_hash(q))

    async def refresh_failed():
        return sim.stats().get(q) == 2 and shop.cluster.redis().exists(error_key)
    await shop.poll_until(refresh_failed, TIMEOUT_S + 5, "the background refresh failed")
    # the failed refresh is remembered: more stale answers, no more upstream requests
    for _ in range(5):
        assert (await shop.get(S, api(q))).json()["cache"] == "stale"
    assert sim.stats() == {q: 2}


@pytest.mark.parametrize("mode, status, code", [
    ("500", 502, "upstream_error"),
    ("malformed", 502, "upstream_malformed"),
    ("timeout", 504, "upstream_timeout"),
])
async def test_upstream_failure_without_a_cached_value(shop, sim, mode, status, code):
    q = fresh_query()
    sim.control(mode)
    reply = await shop.get(A, api(q))
    assert (reply.status, reply.json()["error"]) == (status, code)
    assert reply.json()["message"] and reply.headers["X-Instance"] == A
    # remembered briefly, for every instance: no second upstream request
    again = await shop.get(B, api(q))
    html = await shop.get(A, page(q), headers=HTML)
    assert (again.status, again.json()["error"]) == (status, code)
    assert html.status == status and html.headers["Content-Type"].startswith("text/html")
    assert reply.json()["message"].encode() in html.body
    assert sim.stats() == {q: 1}


async def test_unreachable_upstream_is_a_502(shop):
    q = fresh_query()  # the cache is shared: a query nobody has fetched
    reply = await shop.get(D, api(q))
    assert (reply.status, reply.json()["error"]) == (502, "upstream_unreachable")
    html = await shop.get(D, page(q), headers=HTML)
    assert html.status == 502 and b"cannot reach the upstream" in html.body


async def test_empty_result_is_a_rate_of_zero(shop, sim):
    q = fresh_query()
    sim.control("empty")
    body = (await shop.get(A, api(q))).json()
    assert (body["tweetsPerSecond"], body["resultCount"], body["oldest"]) == (0, 0, None)
    html = await shop.get(B, page(q), headers=HTML)
    assert html.status == 200 and b"0.00" in html.body and b"No recent posts" in html.body


@pytest.mark.parametrize("query_string, code", [
    ("", "missing_query"),
    ("?q=", "missing_query"),
    ("?q=%20%20%20", "missing_query"),
    ("?other=pants", "missing_query"),
    ("?q=" + "x" * 201, "query_too_long"),
    ("?q=%20" + "y" * 201 + "%20", "query_too_long"),
])
@pytest.mark.parametrize("path", ["/api/rate", "/rate"])
async def test_bad_queries_are_400_and_never_reach_the_upstream(shop, sim, path, query_string,
                                                                  code):
    reply = await shop.get(A, path + query_string)
    assert reply.status == 400
    if path == "/api/rate":
        assert reply.json()["error"] == code
    else:  # the page answers with the search form and what was wrong
        assert reply.headers["Content-Type"].startswith("text/html")
        assert b'name="q"' in reply.body and b"rate-error" in reply.body
    assert sim.stats() == {}


async def test_a_200_character_query_is_fine(shop, sim):
    q = "z" * 190 + uuid.uuid4().hex[:10]
    assert (await shop.get(A, api(q))).status == 200
    assert sim.stats() == {q: 1}


async def test_the_query_is_escaped_in_the_page(shop):
    q = f'<script>alert("{uuid.uuid4().hex[:6]}")</script>'
    reply = await shop.get(A, page(q), headers=HTML)
    assert reply.status == 200
    assert b"<script>alert" not in reply.body
    assert b"&lt;script&gt;alert(&quot;" in reply.body
    assert b"tweets per second" in reply.body


async def test_mastodon_upstream(shop, sim):
    tag = fresh_query("tornado").replace("-", "_")
    body = (await shop.get(M, api("#" + tag))).json()
    assert (body["query"], body["resultCount"], body["cache"]) == ("#" + tag, 40, "miss")
    assert body["tweetsPerSecond"] > 0
    assert sim.stats() == {tag: 1}
    bad = await shop.get(M, api("two words"))
    assert (bad.status, bad.json()["error"]) == (400, "bad_query")


async def test_blocking_demo_handler_is_off_by_default(shop):
    assert (await shop.get(A, "/rate/blocking?q=pants")).status == 404
