"""The per-address cap on holds (BB_MAX_HOLDS_PER_ADDRESS) and the longest a hold may
last (BB_HOLD_MAX_S), on two real instances sharing one Redis. Requests go straight to
the instances with X-Real-IP from a trusted proxy (loopback), so no nginx limit can be
what stops them: the count in Redis must. Also on a Redis Cluster."""

from __future__ import annotations

import asyncio
import json

import pytest
from tornado.httpclient import AsyncHTTPClient

from service import redis_keys as keys
from service.web.sessions import new_token, session_id_from

pytestmark = pytest.mark.timeout(90)

CAP = 10
TTL_S, MAX_S = 4, 6
SKUS = ("internet", "tornado", "redis", "async")
SHOPPER = "203.0.113.7"  # the address nginx saw (TEST-NET-3)
COOKIE_SECRET = "hold-limits-test-cookie-secret-0123456789"


@pytest.fixture(scope="module", params=["single", "cluster"])
def cluster(request, tmp_path_factory, cluster_class):
    """On one Redis, and on a Redis Cluster, where an address's count lives in another
    slot (and here on another shard) than most of the books it holds."""
    c = cluster_class(tmp_path_factory.mktemp("hold-limits"), redis_mode=request.param)
    try:
        c.start_redis()
        c.start_apps("app-a", "app-b", BB_COOKIE_SECRET=COOKIE_SECRET,
                     BB_MAX_HOLDS_PER_ADDRESS=str(CAP),
                     BB_HOLD_TTL_S=str(TTL_S), BB_HOLD_MAX_S=str(MAX_S))
        for sku in SKUS:
            c.set_stock(sku, 100)
        yield c
    finally:
        c.stop_all()


@pytest.fixture
async def client():
    http = AsyncHTTPClient(force_instance=True, max_clients=100)
    yield http
    http.close()


async def cart(cluster, client, app: str, token: str, action: str, sku: str,
               address: str = SHOPPER):
    reply = await client.fetch(
        cluster.apps[app].base + "/cart", method="POST", raise_error=False,
        body=json.dumps({"session": token, "action": action, "sku": sku}),
        headers={"Content-Type": "application/json", "X-Real-IP": address})
    return reply


def held(cluster) -> int:
    redis = cluster.redis()
    return sum(redis.zcard(keys.holds_key(sku)) for sku in SKUS)


def release_everything(cluster) -> None:
    cluster.cli("stock", "reset", "--per-book", "100")


async def test_a_hundred_racing_adds_from_one_address_hold_exactly_the_cap(cluster, client):
    release_everything(cluster)
    tokens = [new_token(COOKIE_SECRET)[1] for _ in range(100)]
    replies = await asyncio.gather(*(
        cart(cluster, client, ("app-a", "app-b")[i % 2], token, "add", SKUS[i % len(SKUS)])
        for i, token in enumerate(tokens)))
    codes = [reply.code for reply in replies]
    assert codes.count(200) == CAP and codes.count(429) == 100 - CAP, codes
    assert held(cluster) == CAP
    refused = next(reply for reply in replies if reply.code == 429)
    body = json.loads(refused.body)
    assert body["error"] == "too_many_holds" and f"{CAP} books" in body["message"]
    assert 1 <= int(refused.headers["Retry-After"]) <= TTL_S
    # another address is not held back by this one
    other = await cart(cluster, client, "app-a", new_token(COOKIE_SECRET)[1], "add", "async",
                       address="198.51.100.9")
    assert other.code == 200

    # removes give places back, exactly as many (removed through the other instance)
    winners = [(token, SKUS[i % len(SKUS)]) for i, (token, reply)
               in enumerate(zip(tokens, replies)) if reply.code == 200]
    for token, sku in winners[:3]:
        assert (await cart(cluster, client, "app-b", token, "remove", sku)).code == 200
    again = await asyncio.gather(*(
        cart(cluster, client, "app-a", new_token(COOKIE_SECRET)[1], "add", "internet")
        for _ in range(5)))
    assert sorted(reply.code for reply in again) == [200, 200, 200, 429, 429]
    assert held(cluster) == CAP + 1  # the other address's one copy besides

    # a re-add of a hold the address already counts is not a new hold: it is allowed
    token, sku = winners[5]
    assert (await cart(cluster, client, "app-b", token, "add", sku)).code == 200

    # expiry gives every place back (the sweeper and the count agree)
    for _ in range((TTL_S + 5) * 5):  # polled every 0.2 s
        if not held(cluster):
            break
        await asyncio.sleep(0.2)
    assert held(cluster) == 0
    refill = await asyncio.gather(*(
        cart(cluster, client, "app-b", new_token(COOKIE_SECRET)[1], "add", "redis")
        for _ in range(CAP + 2)))
    assert [reply.code for reply in refill].count(200) == CAP


async def test_a_refused_add_changes_nothing(cluster, client):
    release_everything(cluster)
    for _ in range(CAP):
        assert (await cart(cluster, client, "app-a", new_token(COOKIE_SECRET)[1], "add",
                           "tornado")).code == 200
    before = cluster.redis_state()
    refused = await cart(cluster, client, "app-b", new_token(COOKIE_SECRET)[1], "add", "async")
    assert refused.code == 429
    assert cluster.redis_state() == before


async def test_a_re_add_extends_a_hold_only_up_to_the_longest_a_hold_may_last(cluster, client):
    release_everything(cluster)
    token = new_token(COOKIE_SECRET)[1]
    first = json.loads((await cart(cluster, client, "app-a", token, "add", "internet")).body)
    first_ms = first["serverTime"]
    await asyncio.sleep(TTL_S / 2)
    await cart(cluster, client, "app-b", token, "add", "internet")  # extends: not yet at max
    redis = cluster.redis()
    score = redis.zscore(keys.holds_key("internet"), token_session(token))
    assert score == pytest.approx(first_ms + MAX_S * 1000, abs=50)
    await asyncio.sleep(TTL_S / 2 + 0.5)
    await cart(cluster, client, "app-a", token, "add", "internet")  # would pass the max
    assert redis.zscore(keys.holds_key("internet"), token_session(token)) == score


def token_session(token: str) -> str:
    session = session_id_from(COOKIE_SECRET, token)
    assert session is not None
    return session
