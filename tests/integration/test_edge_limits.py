"""The edge of a real cluster of `up` (nginx, one instance, Redis): every rate limit
answers 429 with Retry-After in the shop's error shape and changes nothing in Redis; a
shopper (or a family behind one address) below the limits never meets one; an exempt
address (BB_LIMIT_EXEMPT) is not limited; slow headers and bodies are cut within their
timeouts, at nginx and at an instance; an idle WebSocket through nginx outlives them all.

Limits are per client address, so each test sends from its own 127.x.y.z (Linux routes
all of 127.0.0.0/8 to loopback) and no test spends another's budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from urllib.parse import urlencode

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse
from tornado.websocket import WebSocketClientConnection, websocket_connect

from service import redis_keys as keys
from service.instance.server import BODY_TIMEOUT_S, IDLE_CONNECTION_TIMEOUT_S
from support.deployment import ROOT, Deployment

pytestmark = pytest.mark.timeout(90)

HTTP_CONF = (ROOT / "nginx" / "http.conf").read_text()
LOCATIONS = (ROOT / "nginx" / "locations.conf").read_text()
SKU = "tornado"
EXEMPT = "127.0.0.77"
# a cut-off may come this much later than its timeout on a busy shared machine
SLACK_S = 3.0


def nginx_seconds(directive: str) -> float:
    return float(re.search(rf"^{directive} (\d+)s;", HTTP_CONF, re.M).group(1))


def burst(zone: str) -> int:
    return int(re.search(rf"limit_req zone={zone} burst=(\d+)", LOCATIONS).group(1))


def status_connections() -> int:
    return int(re.search(r"limit_conn bb_status (\d+);", LOCATIONS).group(1))


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    deployment = Deployment(tmp_path_factory.mktemp("edge") / "var", instances=1,
                            env={"BB_LIMIT_EXEMPT": f"{EXEMPT}, 10.11.0.0/16"})
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()


@pytest.fixture
async def client():
    client = AsyncHTTPClient(force_instance=True, max_clients=20)
    yield client
    client.close()


async def fetch(client: AsyncHTTPClient, edge: Deployment, path: str, source: str,
                method: str = "GET", body: str | None = None,
                headers: dict[str, str] | None = None) -> HTTPResponse:
    """One request through nginx from `source`, whatever its status."""
    return await client.fetch(HTTPRequest(
        edge.base + path, method=method, body=body, network_interface=source,
        headers={"Origin": edge.base, **(headers or {})}, request_timeout=15),
        raise_error=False)


def cart_body(token: str, action: str, sku: str = SKU) -> str:
    return json.dumps({"session": token, "action": action, "sku": sku})


async def until_limited(send, most: int, batch: int = 10) -> tuple[int, HTTPResponse]:
    """Send in concurrent batches until nginx answers one with 429 (an instance's own
    429, e.g. too many wrong admin tokens, names its instance): (answers before, it)."""
    sent = 0
    while sent < most:
        replies = await asyncio.gather(*(send() for _ in range(batch)))
        sent += batch
        limited = [reply for reply in replies
                   if reply.code == 429 and "X-Instance" not in reply.headers]
        assert all(reply.code != 599 for reply in replies), replies[0].error
        if limited:
            return sent - len(limited), limited[0]
    raise AssertionError(f"{most} requests and not one 429")


def assert_rate_limited_json(reply: HTTPResponse, retry_after_s: str = "1") -> None:
    assert reply.code == 429
    assert reply.headers["Content-Type"].startswith("application/json")
    assert reply.headers["Retry-After"] == retry_after_s
    body = json.loads(reply.body)
    assert body["error"] == "rate_limited"
    assert body["message"].endswith(".") and len(body["message"].split()) > 5
    # answered by nginx: the instance never saw it
    assert "X-Instance" not in reply.headers


def assert_rate_limited_page(reply: HTTPResponse, retry_after_s: str = "1") -> None:
    assert reply.code == 429
    assert reply.headers["Content-Type"].startswith("text/html")
    assert reply.headers["Retry-After"] == retry_after_s
    assert b"<html" in reply.body and b"Too many" in reply.body
    assert "X-Instance" not in reply.headers and "Set-Cookie" not in reply.headers


def book_state(edge: Deployment, sku: str = SKU) -> dict[str, bytes | None]:
    """Every Redis key of a book, serialised: equal states, equal books."""
    redis = edge.redis()
    try:
        return {key: redis.dump(key) for key in keys.sku_keys(sku)}
    finally:
        redis.close()


# --------------------------------------------------------------------------- the limits

async def test_cart_posts_over_the_limit_get_429_and_change_nothing(edge, client):
    source = "127.0.1.1"
    _, idle = edge.session()  # holds nothing: its removes are refused and change nothing
    _, shopper = edge.session()

    async def refused_remove() -> HTTPResponse:
        return await fetch(client, edge, "/cart", source, "POST", cart_body(idle, "remove"),
                           {"Content-Type": "application/json"})
    served, limited = await until_limited(refused_remove, most=200)
    assert served > burst("bb_cart"), "the burst a person may click was not served"
    assert_rate_limited_json(limited)
    # a slot frees every 0.2 s: if one did before the add, spend it and try again
    for _ in range(3):
        await until_limited(refused_remove, most=200)
        before = book_state(edge)
        reply = await fetch(client, edge, "/cart", source, "POST", cart_body(shopper, "add"),
                            {"Content-Type": "application/json"})
        if reply.code == 429:
            break
        await fetch(client, edge, "/cart", source, "POST", cart_body(shopper, "remove"),
                    {"Content-Type": "application/json"})
    assert_rate_limited_json(reply)
    assert book_state(edge) == before
    # a form without JavaScript (a browser's Accept) gets the page instead
    form = await fetch(client, edge, "/cart", source, "POST",
                       urlencode({"session": shopper, "action": "add", "sku": SKU}),
                       {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert_rate_limited_page(form)
    # reading is not a cart change: the same address still reads
    assert (await fetch(client, edge, "/api/books", source)).code == 200


async def test_page_loads_over_the_limit_get_a_429_page_and_no_session(edge, client):
    source = "127.0.1.2"

    async def book_page() -> HTTPResponse:
        return await fetch(client, edge, f"/books/{SKU}", source)
    served, limited = await until_limited(book_page, most=300)
    assert served > burst("bb_pages")
    assert_rate_limited_page(limited)
    # the front page and the catalog share the spent budget (a slot frees every 0.1 s)
    for path in ("/", "/books", "/books?page=2"):
        served, limited = await until_limited(
            lambda path=path: fetch(client, edge, path, source), most=20, batch=5)
        assert served <= 3, path
        assert_rate_limited_page(limited)
    # static files are not limited
    assert (await fetch(client, edge, "/static/js/shop.js", source)).code == 200


async def test_tweet_rates_over_the_limit_get_429(edge, client):
    source = "127.0.1.3"

    async def api_rate() -> HTTPResponse:
        return await fetch(client, edge, "/api/rate?q=tornado", source)
    served, limited = await until_limited(api_rate, most=200)
    assert served > burst("bb_rate")
    assert_rate_limited_json(limited)
    assert_rate_limited_page(await fetch(client, edge, "/rate?q=tornado", source))


async def test_admin_sign_ins_over_the_limit_get_429_with_a_longer_wait(edge, client):
    source = "127.0.1.4"

    async def sign_in() -> HTTPResponse:
        return await fetch(client, edge, "/admin/login", source, "POST",
                           urlencode({"token": "not-the-token-at-all"}))
    served, limited = await until_limited(sign_in, most=50, batch=4)
    assert served > burst("bb_login")
    assert_rate_limited_json(limited, retry_after_s="10")
    page = await fetch(client, edge, "/admin/login", source, "POST", "token=x",
                       {"Accept": "text/html"})
    assert_rate_limited_page(page, retry_after_s="10")
    assert b"sign-in" in page.body


async def open_socket(edge: Deployment, source: str) -> WebSocketClientConnection:
    socket = await websocket_connect(HTTPRequest(
        f"ws://127.0.0.1:{edge.http_port}/cart/status?sku={SKU}", network_interface=source,
        headers={"Origin": edge.base}, connect_timeout=10, request_timeout=10))
    assert json.loads(await asyncio.wait_for(socket.read_message(), 10))["sku"] == SKU
    return socket


async def test_live_connections_over_the_cap_get_429_until_one_closes(edge, client):
    source = "127.0.1.5"
    cap = status_connections()
    sockets = list(await asyncio.gather(*(open_socket(edge, source) for _ in range(cap))))
    try:
        poll = await fetch(client, edge, f"/cart/status?sku={SKU}&since=0", source)
        assert_rate_limited_json(poll, retry_after_s="5")
        assert "connections" in json.loads(poll.body)["message"]
        with pytest.raises(HTTPClientError) as refused:
            await open_socket(edge, source)
        assert refused.value.code == 429
        # another address is not affected
        assert (await fetch(client, edge, f"/cart/status?sku={SKU}&since=0",
                            "127.0.1.6")).code == 200
        sockets.pop().close()
        deadline = time.monotonic() + 5  # nginx frees the slot when it sees the close
        while True:
            try:
                sockets.append(await open_socket(edge, source))
                break
            except HTTPClientError as exc:
                assert exc.code == 429 and time.monotonic() < deadline
                await asyncio.sleep(0.05)
    finally:
        for socket in sockets:
            socket.close()


async def test_a_family_behind_one_address_never_meets_a_limit(edge, client):
    """Four people at once, each quicker than people are (an action every 0.3 s): the
    shop, the catalog and a book, a tweet rate, counts live in two tabs, books added and
    removed."""
    source = "127.0.1.7"
    redis = edge.redis()
    redis.set(keys.stock_key("internet"), 1000)  # plenty of copies for four shoppers
    redis.close()

    async def person(n: int) -> list[tuple[str, int]]:
        _, token = edge.session()
        answers = []

        async def act(path: str, method: str = "GET", body: str | None = None) -> None:
            reply = await fetch(client, edge, path, source, method, body,
                                {"Content-Type": "application/json"} if body else None)
            answers.append((f"{method} {path} {body or ''}", reply.code))
            await asyncio.sleep(0.3)
        for path in ("/", "/books", f"/books/{SKU}", "/books?page=1", "/rate?q=python"):
            await act(path)
        sockets = [await open_socket(edge, source) for _ in range(2)]
        for sku in (SKU, "internet"):
            for action in ("add", "remove", "add", "remove"):
                await act("/cart", "POST", cart_body(token, action, sku))
        await act(f"/api/rate?q=family{n}")
        for socket in sockets:
            socket.close()
        return answers
    answers = [answer for person_answers in await asyncio.gather(*(person(n) for n in range(4)))
               for answer in person_answers]
    assert {code for _, code in answers} == {200}, [a for a in answers if a[1] != 200]


async def test_an_exempt_address_is_not_limited(edge, client):
    _, token = edge.session()

    async def send(method: str, path: str, body: str | None = None) -> list[int]:
        replies = await asyncio.gather(*(
            fetch(client, edge, path, EXEMPT, method, body, {"Content-Type": "application/json"})
            for _ in range(3 * burst("bb_pages"))))
        return [reply.code for reply in replies]
    assert 429 not in await send("POST", "/cart", cart_body(token, "remove"))
    assert 429 not in await send("GET", f"/books/{SKU}")
    assert 429 not in await send("GET", "/api/rate?q=tornado")
    sockets = list(await asyncio.gather(*(open_socket(edge, EXEMPT)
                                          for _ in range(status_connections() + 5))))
    for socket in sockets:
        socket.close()


# --------------------------------------------------------------------------- timeouts

async def cut_after_s(port: int, source: str, head: bytes, dribble: bytes = b"") -> float:
    """Send `head`, then one byte of `dribble` every half second (or nothing): how long
    until the server closed the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    started = time.monotonic()
    writer.write(head)

    async def trickle() -> None:
        with contextlib.suppress(OSError):
            for byte in dribble:
                await asyncio.sleep(0.5)
                writer.write(bytes([byte]))
                await writer.drain()
    trickling = asyncio.create_task(trickle())
    try:
        with contextlib.suppress(ConnectionResetError):
            while await reader.read(4096):  # a 408 nginx may send first, then the close
                pass
        return time.monotonic() - started
    finally:
        trickling.cancel()
        writer.close()


async def test_slow_headers_and_bodies_are_cut_within_their_timeouts(edge):
    nginx, instance = edge.http_port, edge.apps["app-1"]
    endless = b"a" * 1000
    header = b"GET /books HTTP/1.1\r\nHost: shop\r\nX-Slow: "
    body_head = (b"POST /cart HTTP/1.1\r\nHost: shop\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 500\r\n\r\n{\"session\": ")
    checks = {
        # nginx: the whole header within client_header_timeout, however it is dribbled
        "nginx header": (nginx_seconds("client_header_timeout"),
                         cut_after_s(nginx, "127.0.2.1", header, endless)),
        # nginx: no read of the body for client_body_timeout
        "nginx body": (nginx_seconds("client_body_timeout"),
                       cut_after_s(nginx, "127.0.2.2", body_head)),
        # an instance (reached straight): the header, then the whole body, each in time
        "instance header": (IDLE_CONNECTION_TIMEOUT_S,
                            cut_after_s(instance, "127.0.2.3", header, endless)),
        "instance idle": (IDLE_CONNECTION_TIMEOUT_S, cut_after_s(instance, "127.0.2.4", b"")),
        "instance body": (BODY_TIMEOUT_S, cut_after_s(instance, "127.0.2.5", body_head, endless)),
    }
    cuts = await asyncio.gather(*(cut for _, cut in checks.values()))
    for (name, (timeout_s, _)), cut_s in zip(checks.items(), cuts):
        assert timeout_s - 0.5 <= cut_s <= timeout_s + SLACK_S, (name, timeout_s, cut_s)


async def test_an_idle_websocket_through_nginx_outlives_every_timeout(edge, client):
    longest_s = max(nginx_seconds("client_header_timeout"), nginx_seconds("client_body_timeout"),
                    nginx_seconds("send_timeout"), IDLE_CONNECTION_TIMEOUT_S, BODY_TIMEOUT_S)
    socket = await open_socket(edge, "127.0.3.1")
    try:
        # nothing to read for longer than every timeout: a message now is a failure
        with pytest.raises(asyncio.TimeoutError):
            message = await asyncio.wait_for(socket.read_message(), longest_s + 2)
            raise AssertionError(f"the idle socket got {message!r} (None: closed)")
        _, token = edge.session()
        change = await fetch(client, edge, "/cart", "127.0.3.2", "POST", cart_body(token, "add"),
                             {"Content-Type": "application/json"})
        assert change.code == 200, change.body
        pushed = json.loads(await asyncio.wait_for(socket.read_message(), 5))
        assert pushed["version"] == json.loads(change.body)["version"]
        await fetch(client, edge, "/cart", "127.0.3.2", "POST", cart_body(token, "remove"),
                    {"Content-Type": "application/json"})
    finally:
        socket.close()
