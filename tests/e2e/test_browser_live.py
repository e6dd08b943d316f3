"""Live counts in real browser windows: across instances, by WebSocket and by long-poll,
across an instance being stopped, and on the catalog over one connection."""

from __future__ import annotations

import pytest

from support.browser import LIVE_UPDATE_S, network_events

FEATURED = "internet"


def test_add_in_one_window_updates_a_window_on_another_instance_within_a_second(cluster, browser):
    # each window straight on its own instance: the change crosses Redis pub/sub
    first = browser.open(cluster.app_base("app-1") + "/", name="app-1-window")
    second = browser.open(cluster.app_base("app-2") + "/", name="app-2-window")
    for window, instance in ((first, "app-1"), (second, "app-2")):
        window.wait_live("websocket")
        assert window.instance() == instance
        assert window.text(".book-title") == "The Definitive Guide to the Internet"
        assert "WebSocket" in window.text("#live-status") and instance in window.text("#live-status")
    count = second.count()
    assert first.count() == count and first.text("#add-button") == "Add to Cart"

    first.find("#add-button").click()
    second.wait(lambda: second.count() == count - 1, LIVE_UPDATE_S, f"the count going to {count - 1}")
    first.wait(lambda: first.find("#remove-from-cart").is_displayed(), LIVE_UPDATE_S,
               "switching to the in-cart view")
    assert first.text(".in-cart-note") == "One copy is in your cart."
    assert not first.find("#add-to-cart").is_displayed()
    assert first.find("#remove-button").text == "Remove from Cart"
    assert first.count() == count - 1
    # the other shopper's view does not change: they hold nothing
    assert second.find("#add-button").is_enabled() and not second.find("#remove-from-cart").is_displayed()

    first.find("#remove-button").click()
    for window in (first, second):
        window.wait(lambda w=window: w.count() == count, LIVE_UPDATE_S, f"the count back at {count}")
    first.wait(lambda: first.find("#add-to-cart").is_displayed(), LIVE_UPDATE_S, "the Add view again")
    assert not first.find("#remove-from-cart").is_displayed()
    assert first.find("#add-button").is_enabled()


# Two ways a browser ends up without a WebSocket. Each script runs in the page before
# the shop's own script, so the page's real fallback code path runs.
NO_WEBSOCKET = {
    # blocked (an old browser, a policy or an extension): constructing one throws
    "blocked": """
        window.WebSocket = function () {
          throw new DOMException('WebSockets are blocked here', 'SecurityError');
        };""",
    # a real upgrade request the real server refuses (404: it names a book the shop does
    # not have), so the handshake fails in the browser's network stack
    "refused by the server": """
        (function () {
          var Native = window.WebSocket;
          window.WebSocket = function (url, protocols) {
            return new Native(url + '&sku=no-such-book', protocols);
          };
          window.WebSocket.prototype = Native.prototype;
        })();""",
}


@pytest.mark.parametrize("failure", list(NO_WEBSOCKET))
def test_without_websockets_a_window_falls_back_to_long_poll_and_still_updates_within_a_second(
        cluster, browser, shop, failure):
    window = browser.open(cluster.base + "/", name="long-poll-window", before_load=NO_WEBSOCKET[failure])
    window.wait_live("longpoll")
    assert window.text("#live-status").startswith("live: long-poll")
    count = window.count()
    another_shopper = shop.shopper()

    assert shop.post(another_shopper, "add", FEATURED)[0] == 200
    window.wait(lambda: window.count() == count - 1, LIVE_UPDATE_S, f"the count going to {count - 1}")
    assert shop.post(another_shopper, "remove", FEATURED)[0] == 200
    window.wait(lambda: window.count() == count, LIVE_UPDATE_S, f"the count back at {count}")
    assert window.transport() == "longpoll"  # and it stayed on long-poll
    if failure == "refused by the server":
        refusals = [e["message"] for e in window.browser_log() if "no-such-book" in e["message"]]
        assert refusals, "the browser logged no failed WebSocket handshake"


@pytest.mark.timeout(150)
def test_a_window_whose_instance_stops_reconnects_through_nginx_and_catches_up(cluster, browser, shop):
    sku = "tornado"
    window = browser.open(f"{cluster.base}/books/{sku}", name="through-nginx")
    window.wait_live("websocket")
    first = window.instance()
    other = next(name for name in cluster.apps if name != first)
    count = window.count()
    stock = shop.state()[sku][0]
    window.record_transports()
    try:
        # 1. its instance stops (drains, closes the socket with 1001): the page reconnects
        # by itself, through nginx, to the other instance
        cluster.ctl("stop", first)
        window.wait(lambda: window.instance() == other and window.transport() == "websocket", 10,
                    f"a WebSocket through nginx to {other}")
        assert "reconnecting" in window.transports_seen(), window.transports_seen()

        # 2. the other one stops too: nothing answers, and the page says so while a
        # change is made (an operator restocks) that it cannot hear about
        cluster.ctl("stop", other)
        window.wait(lambda: window.text("#live-status") == "reconnecting…", 10,
                    "the indicator saying reconnecting…")
        shop.set_stock(sku, stock + 3)
        assert window.count() == count and window.text("#live-status") == "reconnecting…"

        # 3. an instance is back: the page gets there by itself and shows the new count
        cluster.ctl("start", first)
        window.wait(lambda: window.count() == count + 3, 20, f"the count going to {count + 3}")
        assert window.instance() == first
        # long-poll may have bridged the outage; the page goes back to a WebSocket
        window.wait_live("websocket", timeout_s=10)
        assert window.text("#live-status") == f"live: WebSocket · via {first}"
    finally:
        for name in cluster.apps:
            cluster.ctl("start", name)


def test_the_catalog_updates_every_book_live_over_one_connection(cluster, browser, shop):
    window = browser.open(cluster.base + "/books", name="catalog")
    window.wait_live("websocket")
    counts = window.counts()
    skus = [book["sku"] for book in shop.books()]
    assert sorted(counts) == sorted(skus) and len(skus) >= 4
    another_shopper = shop.shopper()

    for sku in skus:
        assert shop.post(another_shopper, "add", sku)[0] == 200
        expected = {**counts, sku: counts[sku] - 1}
        window.wait(lambda e=expected: window.counts() == e, LIVE_UPDATE_S, f"{sku} going down by one")
        counts = expected
    for sku in skus:
        assert shop.post(another_shopper, "remove", sku)[0] == 200
    window.wait(lambda: all(window.counts()[sku] == counts[sku] + 1 for sku in skus), LIVE_UPDATE_S,
                "every count back")

    events = network_events(window.driver)
    sockets = [e["params"]["url"] for e in events if e["method"] == "Network.webSocketCreated"]
    polls = [e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"
             and "/cart/status" in e["params"]["request"]["url"]]
    assert len(sockets) == 1, sockets
    assert all(f"sku={sku}" in sockets[0] for sku in skus), sockets[0]
    assert not polls, polls
