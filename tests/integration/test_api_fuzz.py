"""Schemathesis against a real instance: every operation of /api/openapi.json is fuzzed
(its examples, its coverage cases and generated ones, valid and invalid, a bounded number
with a fixed seed), and every answer must be no 5xx and match the description: a
documented status, content type, headers and body. Then Redis must still be consistent.

One cluster for the module (redis-server, the upstream simulator, one instance). The
instance holds a long-poll 1 s, so a poll that waits costs little. Invalid data is sent
as generated; most valid cases get a session the shop signed and real SKUs (chosen by a
generator seeded with the case, so the run stays reproducible), so carts really change:
holds, sold out (`async` has 1 copy), the per-address cap (3) and 303 redirects.

The second test reads Redis after the fuzzing: a book's count is not stored but derived,
stock - ZCARD(holds), by every script (service/inventory/scripts.py), so what must hold
is that no count is negative, the holds and their holders agree, the per-address counts
match the holds, stock and epochs did not move, versions only grew, and the instance
serves what Redis has.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import random
import re
import time
import urllib.request

import pytest
import schemathesis
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.generation import GenerationMode

from service import redis_keys as keys
from service.web import sessions
from service.web.openapi import OPENAPI_PATH

pytestmark = pytest.mark.timeout(120)

A = "app-a"
SEED = 20240611
EXAMPLES = 20  # generated cases per operation (the coverage phase adds its own)
CART_EXAMPLES = 60
SOLD_OUT_SOON, SOLD_OUT_STOCK = "async", 1
MAX_HOLDS_PER_ADDRESS = 3
SESSIONS = 3
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance, negative_data_rejection]
CONFIG = {
    "seed": SEED,
    "generation": {"max-examples": EXAMPLES, "database": "none"},
    # no links between operations are described: nothing for the stateful phase
    "phases": {"stateful": {"enabled": False}},
    # what rejects invalid data here: bad input (400), a session not ours (403), no such
    # book (404), a body over 8 KB (413)
    "checks": {"negative_data_rejection": {"expected-statuses": [400, 403, 404, 413]}},
    # carts are where state changes: enough cases to sell a book out and reach the cap
    "operations": [{"include-operation-id": "changeCart",
                    "generation": {"max-examples": CART_EXAMPLES}}],
}


@dataclasses.dataclass
class FuzzedShop:
    """The instance under test, what it knew before the fuzzing, and what it answered."""
    cluster: object
    base: str
    skus: list[str]
    tokens: list[str]
    before: dict[str, dict]
    answers: collections.Counter = dataclasses.field(default_factory=collections.Counter)


def book_state(cluster, sku: str) -> dict:
    """One book's keys, read in one transaction."""
    pipe = cluster.redis().pipeline(transaction=True)
    pipe.get(keys.stock_key(sku)).get(keys.version_key(sku)).get(keys.epoch_key(sku))
    pipe.zrange(keys.holds_key(sku), 0, -1, withscores=True).hgetall(keys.holders_key(sku))
    stock, version, epoch, holds, holders = pipe.execute()
    return {"stock": int(stock), "version": int(version), "epoch": epoch.decode(),
            "holds": {s.decode(): int(score) for s, score in holds},
            "holders": {s.decode(): h.decode() for s, h in holders.items()}}


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as reply:
        return json.loads(reply.read())


@pytest.fixture(scope="module")
def shop(tmp_path_factory, cluster_class):
    c = cluster_class(tmp_path_factory.mktemp("api-fuzz"))
    try:
        c.start_redis()
        sim = c.start_upstream_sim()
        (app,) = c.start_apps(A, BB_LONGPOLL_TIMEOUT_S=1, BB_UPSTREAM_URL=sim.url,
                              BB_MAX_HOLDS_PER_ADDRESS=MAX_HOLDS_PER_ADDRESS)
        c.set_stock(SOLD_OUT_SOON, SOLD_OUT_STOCK)
        skus = [book["sku"] for book in get_json(app.base + "/api/books")]
        # the document fuzzed below is the one the instance serves
        assert get_json(app.base + "/api/openapi.json") == json.loads(OPENAPI_PATH.read_bytes())
        secret = app.env["BB_COOKIE_SECRET"]
        yield FuzzedShop(c, app.base, skus, [sessions.new_token(secret)[1]
                                             for _ in range(SESSIONS)],
                         {sku: book_state(c, sku) for sku in skus})
    finally:
        c.stop_all()


# Loaded from the package at collection (one test per operation); the `shop` fixture
# checks that the instance serves this very document. (Schemathesis 4.32's from_fixture,
# which would load it from the instance, fails on pytest 9.2: it sets Node._nodeid. On
# pytest 9.2 the operations' tests also share one node id: a failure names its operation
# in its message.)
schema = schemathesis.openapi.from_path(OPENAPI_PATH, config=schemathesis.Config.from_dict(CONFIG))


def fingerprint(case, shop: FuzzedShop) -> str:
    """The case's data, without what differs from run to run: signed sessions and epochs
    (the coverage phase may build a case from data an earlier one was given), addresses
    in reprs (an absent body)."""
    text = re.sub(r" at 0x[0-9a-f]+", "", f"{case.operation.label} {case.query!r} {case.body!r}")
    for varying in [*shop.tokens, *(book["epoch"] for book in shop.before.values())]:
        text = text.replace(varying, "*")
    return text


def like_a_shopper(case, shop: FuzzedShop) -> None:
    """For most valid cases: a signed session, real SKUs and the shop's own Origin in place
    of the generated ones. (An invalid case stays as generated: its rejection is tested.)
    The choices are drawn from the case itself, so a seed gives the same run every time."""
    pick = random.Random(fingerprint(case, shop))
    if pick.random() < 0.3:
        return
    if case.method == "POST" and isinstance(case.body, dict):
        # as a page of the shop would send it (any other Origin is refused, 403)
        headers = {k: v for k, v in (case.headers or {}).items()
                   if k not in ("Origin", "Sec-Fetch-Site")}
        case.headers = {**headers, "Origin": shop.base} if pick.random() < 0.5 else headers
        case.body["session"] = pick.choice(shop.tokens)
        # the book that sells out, more often than the others
        case.body["sku"] = pick.choice([SOLD_OUT_SOON, pick.choice(shop.skus)])
    elif case.path == "/api/cart":
        case.query = {**(case.query or {}), "session": pick.choice(shop.tokens)}
    elif case.path in ("/api/books", "/cart/status"):
        skus = pick.sample(shop.skus, pick.randint(1, 3))
        query = {**(case.query or {}), "sku": skus}
        if case.path == "/cart/status":
            # a cursor each book has passed (versions only grow), or an old bare version:
            # never one ahead of Redis, which is answered 503 `behind` after the hold
            query["since"] = ",".join(pick.choice([f"{shop.before[sku]['epoch']}:"
                                                   f"{shop.before[sku]['version']}", "0"])
                                      for sku in skus)
        case.query = query


@schema.parametrize()
def test_every_answer_matches_the_description(case, shop):
    if case.meta is not None and case.meta.generation.mode == GenerationMode.POSITIVE:
        like_a_shopper(case, shop)
    response = case.call_and_validate(base_url=shop.base, checks=CHECKS)
    shop.answers[case.method, case.path, response.status_code] += 1


def test_redis_is_consistent_after_the_fuzzing(shop):
    if not shop.answers:
        pytest.skip("nothing was fuzzed: run the whole module")
    carts = shop.answers
    # the valid sessions reached the deep paths of POST /cart
    for status in (200, 303, 409, 429):
        assert carts["POST", "/cart", status], f"no POST /cart answered {status}: {carts}"
    after = {sku: book_state(shop.cluster, sku) for sku in shop.skus}
    counted: dict[str, dict[str, int]] = collections.defaultdict(dict)
    for sku, book in after.items():
        before = shop.before[sku]
        assert (book["stock"], book["epoch"]) == (before["stock"], before["epoch"]), sku
        assert book["version"] >= before["version"], sku
        assert book["stock"] - len(book["holds"]) >= 0, f"{sku}: negative count {book}"
        assert set(book["holders"]) == set(book["holds"]), f"{sku}: holds != holders {book}"
        for session, holder in book["holders"].items():
            counted[holder.split(" ", 1)[1]][f"{sku} {session}"] = book["holds"][session]
    # every address's count is exactly its holds, each entry expiring with its hold
    redis = shop.cluster.redis()
    addresses = {key.decode() for key in redis.scan_iter(keys.ADDRESS_HOLDS_PATTERN)}
    assert addresses == {keys.address_holds_key(a) for a in counted}
    for address, entries in counted.items():
        held = {e.decode(): int(score) for e, score in redis.zrange(
            keys.address_holds_key(address), 0, -1, withscores=True)}
        assert held == entries, address
        assert len(held) <= MAX_HOLDS_PER_ADDRESS
    assert any(book["holds"] for book in after.values()), "no hold was made"
    # what the instance serves, from Redis and from its live view, is what Redis has
    expected = {sku: (book["stock"] - len(book["holds"]), book["version"])
                for sku, book in after.items()}
    served = {b["sku"]: (b["inventoryCount"], b["version"])
              for b in get_json(shop.base + "/api/books")}
    assert served == expected
    query = "&".join(f"sku={sku}" for sku in shop.skus)
    deadline = time.monotonic() + 5
    while True:  # the live view follows Redis through pub/sub: allow it a moment
        live = {b["sku"]: (b["inventoryCount"], b["version"])
                for b in get_json(f"{shop.base}/cart/status?{query}&since="
                                  + ",".join("0" for _ in shop.skus))["books"]}
        if live == expected or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert live == expected
