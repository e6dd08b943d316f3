"""The upstream simulator's HTTP interface, served in this process: shapes, rpp, stats,
the control endpoint and --error-rate."""

from __future__ import annotations

import json
import socket

import pytest
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer

from service.search.adapters import Mastodon, TwitterV1
from service.search.simulator import make_sim_app

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
async def sim():
    servers, client = [], AsyncHTTPClient(force_instance=True)

    def start(**options):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        listener.setblocking(False)
        server = HTTPServer(make_sim_app(**options))
        server.add_sockets([listener])
        servers.append(server)
        base = f"http://127.0.0.1:{listener.getsockname()[1]}"

        async def call(path: str, body=None):
            reply = await client.fetch(base + path, method="GET" if body is None else "POST",
                                       body=None if body is None else json.dumps(body),
                                       raise_error=False)
            return reply.code, reply.body
        return call
    yield start
    client.close()
    for server in servers:
        server.stop()


async def test_search_answers_the_seeds_shape_newest_first(sim):
    call = sim()
    status, body = await call("/search.json?q=pants&result_type=recent&rpp=100")
    results = json.loads(body)["results"]
    assert status == 200 and len(results) == 100
    assert set(results[0]) >= {"created_at", "text", "from_user", "id"}
    stamps = TwitterV1().timestamps(body)
    assert stamps == sorted(stamps, reverse=True)
    status, body = await call("/search.json?q=pants&rpp=7")
    assert len(json.loads(body)["results"]) == 7


async def test_mastodon_timeline_shape(sim):
    call = sim()
    status, body = await call("/api/v1/timelines/tag/tornado?limit=80")
    statuses = json.loads(body)
    assert status == 200 and len(statuses) == 40  # Mastodon's own maximum
    assert set(statuses[0]) >= {"id", "created_at", "content", "account"}
    assert statuses[0]["created_at"].endswith("Z") and "acct" in statuses[0]["account"]
    assert len(Mastodon().timestamps(body)) == 40


@pytest.mark.parametrize("query", ["", "?q=", "?q=pants&rpp=0", "?q=pants&rpp=101",
                                   "?q=pants&rpp=lots"])
async def test_bad_search_requests(sim, query):
    status, _ = await sim()("/search.json" + query)
    assert status == 400


async def test_stats_count_per_query_and_reset(sim):
    call = sim()
    for q in ("pants", "pants", "shirts"):
        await call(f"/search.json?q={q}")
    _status, body = await call("/stats")
    assert json.loads(body) == {"requests": {"pants": 2, "shirts": 1}, "total": 3}
    await call("/stats/reset", {})
    assert json.loads((await call("/stats"))[1]) == {"requests": {}, "total": 0}


@pytest.mark.parametrize("mode, status, check", [
    ("500", 500, lambda body: json.loads(body)["error"]),
    ("malformed", 200, lambda body: body.startswith(b'{"results": [') and not body.endswith(b"}")),
    ("empty", 200, lambda body: json.loads(body)["results"] == []),
])
async def test_control_modes(sim, mode, status, check):
    call = sim()
    code, body = await call("/control", {"mode": mode})
    assert code == 200 and json.loads(body)["mode"] == mode
    code, body = await call("/search.json?q=pants")
    assert code == status and check(body)
    await call("/control", {"mode": "ok"})
    assert (await call("/search.json?q=pants"))[0] == 200


@pytest.mark.parametrize("body", [{"mode": "sometimes"}, {"extra_latency_ms": -1},
                                  {"extra_latency_ms": "soon"}, ["ok"]])
async def test_control_refuses_nonsense(sim, body):
    call = sim()
    code, _ = await call("/control", body)
    assert code == 400
    assert json.loads((await call("/control"))[1])["mode"] == "ok"


async def test_error_rate(sim):
    always, never = sim(error_rate=1.0), sim(error_rate=0.0)
    assert (await always("/search.json?q=pants"))[0] == 500
    assert (await never("/search.json?q=pants"))[0] == 200
