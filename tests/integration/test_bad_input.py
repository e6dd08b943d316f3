"""Every bad request gets its status and changes nothing in Redis (byte for byte) and
pushes nothing to live clients. One cluster (Redis + one instance) for the module."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from tornado.web import create_signed_value

FEATURED = "internet"
ALL_SKUS = "sku=internet&sku=tornado&sku=redis&sku=async"
A = "app-a"

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, cluster_class):
    c = cluster_class(tmp_path_factory.mktemp("bad-input"))
    try:
        c.start_redis()
        c.start_apps(A)
        yield c
    finally:
        c.stop_all()


def foreign_token() -> str:
    """A well-formed session signed with a secret this shop does not use."""
    return create_signed_value("some-other-shop-secret-0123456789", "bb_session",
                               uuid.uuid4().hex).decode()


def tampered(token: str) -> str:
    return token[:-1] + ("0" if token[-1] != "0" else "1")


def sold_out_setup(cluster) -> None:
    cluster.set_stock("async", 0)


def port(shop) -> int:
    return shop.app(A).port


# name -> (expected status, expected error code or None, request(shop, token), setup)
CASES = {
    "missing session": (400, "missing_session",
                        lambda s, t: s.post_cart(A, {"action": "add"}), None),
    "empty session": (400, "missing_session",
                      lambda s, t: s.post_cart(A, {"session": "", "action": "add"}), None),
    "unsigned session": (403, "bad_session",
                         lambda s, t: s.post_cart(A, {"session": uuid.uuid4().hex,
                                                      "action": "add"}), None),
    "tampered session": (403, "bad_session",
                         lambda s, t: s.post_cart(A, {"session": tampered(t), "action": "add"}),
                         None),
    "session signed with another secret": (
        403, "bad_session",
        lambda s, t: s.post_cart(A, {"session": foreign_token(), "action": "add"}), None),
    "unknown action": (400, "bad_action",
                       lambda s, t: s.post_cart(A, {"session": t, "action": "steal"}), None),
    "missing action": (400, "bad_action", lambda s, t: s.post_cart(A, {"session": t}), None),
    "unknown sku": (404, "unknown_sku",
                    lambda s, t: s.post_cart(A, {"session": t, "action": "add",
                                                 "sku": "no-such-book"}), None),
    "unknown sku remove": (404, "unknown_sku",
                           lambda s, t: s.post_cart(A, {"session": t, "action": "remove",
                                                        "sku": "no-such-book"}), None),
    "sold out": (409, "sold_out",
                 lambda s, t: s.post_cart(A, {"session": t, "action": "add", "sku": "async"}),
                 sold_out_setup),
    "oversized body": (413, "too_large",
                       lambda s, t: s.post_cart(A, {"session": t, "action": "add",
                                                    "pad": "x" * (9 * 1024)}), None),
    "cross-site Origin": (403, "cross_site",
                          lambda s, t: s.post_cart(A, {"session": t, "action": "add"},
                                                   headers={"Origin": "http://evil.example"}),
                          None),
    "Origin null": (403, "cross_site",
                    lambda s, t: s.post_cart(A, {"session": t, "action": "add"},
                                             headers={"Origin": "null"}), None),
    "Origin that is not a URL": (403, "cross_site",
                                 lambda s, t: s.post_cart(A, {"session": t, "action": "add"},
                                                          headers={"Origin": "http://["}), None),
    "Origin same host other port": (
        403, "cross_site",
        lambda s, t: s.post_cart(A, {"session": t, "action": "add"},
                                 headers={"Origin": f"http://127.0.0.1:{port(s) + 1}"}), None),
    "Sec-Fetch-Site cross-site": (
        403, "cross_site",
        lambda s, t: s.post_cart(A, {"session": t, "action": "add"},
                                 headers={"Sec-Fetch-Site": "cross-site"}), None),
    "malformed JSON": (400, "bad_json",
                       lambda s, t: s.post_cart(A, raw=b'{"session": ',
                                                headers={"Content-Type": "application/json"}),
                       None),
    "JSON not an object": (400, "bad_json",
                           lambda s, t: s.post_cart(A, json_body=[t, "add"]), None),
    "JSON non-string value": (400, "bad_json",
                              lambda s, t: s.post_cart(A, json_body={"session": t, "action": 1}),
                              None),
    "next off site": (400, "bad_next",
                      lambda s, t: s.post_cart(A, {"session": t, "action": "add",
                                                   "next": "//evil.example/"}), None),
    "next backslash host": (400, "bad_next",
                            lambda s, t: s.post_cart(A, {"session": t, "action": "add",
                                                         "next": "/\\evil.example/"}), None),
    "next tab then slash": (400, "bad_next",
                            lambda s, t: s.post_cart(A, {"session": t, "action": "add",
                                                         "next": "/\t/evil.example/"}), None),
    "next with CR LF": (400, "bad_next",
                        lambda s, t: s.post_cart(A, {"session": t, "action": "add",
                                                     "next": "/books\r\nSet-Cookie: x=1"}),
                        None),
    "next with a scheme": (400, "bad_next",
                           lambda s, t: s.post_cart(A, {"session": t, "action": "add",
                                                        "next": "javascript:alert(1)"}), None),
    "next lone surrogate": (400, "bad_json",
                            lambda s, t: s.post_cart(A, raw=(
                                '{"session": "' + t + '", "action": "add", "next": "/\\ud800"}'
                            ).encode(),
                                                     headers={"Content-Type":
                                                              "application/json"}), None),
    "JSON nested 4000 deep": (400, "bad_json",
                              lambda s, t: s.post_cart(A, raw=b"[" * 4000 + b"]" * 4000,
                                                       headers={"Content-Type":
                                                                "application/json"}), None),
    "form field invalid UTF-8": (400, "bad_request",
                                 lambda s, t: s.post_cart(A, raw=b"session=" + t.encode()
                                                          + b"&action=add&sku=%FF%FE"), None),
    "JSON wrong type for session": (400, "bad_json",
                                    lambda s, t: s.post_cart(A, json_body={"session": [t],
                                                                           "action": "add"}),
                                    None),
    "huge sku": (404, "unknown_sku",
                 lambda s, t: s.post_cart(A, {"session": t, "action": "add",
                                              "sku": "x" * 7000}), None),
    "bad since": (400, "bad_since", lambda s, t: s.get(A, "/cart/status?since=abc"), None),
    "since with a non-ASCII digit": (400, "bad_since",
                                     lambda s, t: s.get(A, "/cart/status?since=x:%C2%B2"), None),
    "since count mismatch": (400, "bad_since",
                             lambda s, t: s.get(A, "/cart/status?sku=internet&sku=redis"
                                                   "&since=1,2,3"), None),
    "status unknown sku": (404, "unknown_sku",
                           lambda s, t: s.get(A, "/cart/status?sku=no-such-book"), None),
    "status more than 50 skus": (
        400, "too_many_skus",
        lambda s, t: s.get(A, "/cart/status?" + "&".join(f"sku=b{i}" for i in range(51))), None),
    "websocket unknown sku": (404, None,
                              lambda s, t: s.ws_status(A, "sku=no-such-book"), None),
    "websocket foreign Origin": (403, None,
                                 lambda s, t: s.ws_status(A, headers={
                                     "Origin": "http://evil.example"}), None),
    "websocket Origin that is not a URL": (403, None,
                                           lambda s, t: s.ws_status(A, headers={
                                               "Origin": "http://[::1"}), None),
    "websocket more than 50 skus": (
        400, None,
        lambda s, t: s.ws_status(A, "&".join(f"sku=b{i}" for i in range(51))), None),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_bad_input_gets_its_status_and_changes_nothing(cluster, shop, case):
    status, code, request, setup = CASES[case]
    if setup is not None:
        await asyncio.to_thread(setup, cluster)
    token = await shop.token(A)
    watcher = await shop.ws_recorder(A, ALL_SKUS)
    await watcher.wait_for(lambda m: m["sku"] == "async", 5)
    opening = len(watcher.payloads)
    assert opening == 4

    before = cluster.redis_state()
    assert before, "no bb:* keys in Redis"
    reply = await request(shop, token)
    after = cluster.redis_state()
    # Marker changes after the reply (a hold taken and given back, so the shared cluster
    # keeps its stock): pub/sub keeps order, so a (wrong) publish made by the bad request
    # would reach the watcher before the markers do.
    for action in ("add", "remove"):
        marker = await shop.post_cart(A, {"session": token, "action": action, "sku": "internet"})
        assert marker.status == 200, marker.body
    await watcher.wait_for(lambda m: m["version"] == marker.json()["version"]
                           and m["sku"] == "internet", 5, start=opening)

    if isinstance(reply, int):  # a refused WebSocket upgrade
        assert reply == status
    else:
        assert reply.status == status, (reply.status, reply.body[:300])
        assert reply.headers["Content-Type"].startswith("application/json")
        assert reply.headers["X-Instance"] == A
        assert reply.json()["error"] == code, reply.body
    assert after == before, f"{case} changed Redis"
    assert watcher.payloads[opening:-2] == [], f"{case} pushed a change to live clients"
    assert (await shop.get(A, "/healthz")).status == 200


async def test_websocket_message_over_1kib_closes_only_that_socket(cluster, shop):
    bystander = await shop.ws_recorder(A, label="bystander")
    await bystander.wait_for(lambda m: True, 5)
    talker = await shop.ws_recorder(A, label="talker")
    await talker.wait_for(lambda m: True, 5)

    talker.conn.write_message("hello")  # small messages are read and ignored
    await talker.round_trip()  # the server has read it and kept the socket open
    assert not talker.closed

    talker.conn.write_message("x" * 2048)
    await talker.wait_closed(5)
    assert talker.conn.close_code == 1009, talker.conn.close_code
    assert not bystander.closed

    assert (await shop.get(A, "/healthz")).status == 200
    assert (await shop.get(A, "/readyz")).status == 200
    fresh = await shop.ws_recorder(A, label="fresh")
    _, snapshot = await fresh.wait_for(lambda m: True, 5)
    assert snapshot["sku"] == FEATURED
    assert shop.app(A).alive()


BAD_VALUES_JSON = {"lone surrogate": "\\ud800", "control characters": "\\u0000\\u0001\\r\\n",
                   "huge": "x" * 7000, "number": 1, "list": ["add"], "null": None,
                   "object": {"a": "b"}, "boolean": True}


async def test_every_field_with_every_kind_of_garbage_gets_a_4xx_and_changes_nothing(
        cluster, shop):
    """session, action, sku and next, each in turn given invalid UTF-8, a lone surrogate,
    control characters, a huge value or a wrong type, the other fields valid."""
    token = await shop.token(A)
    valid = {"session": token, "action": "add", "sku": "internet", "next": "/books/internet"}
    before = cluster.redis_state()
    answers = {}
    for field in valid:
        others = "&".join(f"{k}={v}" for k, v in valid.items() if k != field)
        raw = (others + f"&{field}=%FF%FE").encode()
        answers[(field, "invalid UTF-8 (form)")] = await shop.post_cart(A, raw=raw)
        for kind, value in BAD_VALUES_JSON.items():
            body = json.dumps({**valid, field: value})
            if isinstance(value, str) and value.startswith("\\u"):
                body = body.replace(json.dumps(value), '"' + value + '"')  # raw escapes
            answers[(field, kind)] = await shop.post_cart(
                A, raw=body.encode(), headers={"Content-Type": "application/json"})
    wrong = {case: (reply.status, reply.body[:120]) for case, reply in answers.items()
             if not 400 <= reply.status < 500 or "error" not in reply.json()}
    assert not wrong, wrong
    assert cluster.redis_state() == before
