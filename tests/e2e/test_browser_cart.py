"""The cart in real browser windows: the session cookie across reloads and instances,
the sold-out state in every window, and a lost race for the last copy."""

from __future__ import annotations

from support.browser import LIVE_UPDATE_S

SKU = "redis"


def test_a_reload_keeps_the_cart_and_another_profile_is_another_shopper(cluster, browser):
    shopper = browser.open(f"{cluster.app_base('app-1')}/books/{SKU}", name="shopper")
    shopper.wait_live()
    count = shopper.count()
    shopper.find("#add-button").click()
    shopper.wait(lambda: shopper.find("#remove-from-cart").is_displayed(), LIVE_UPDATE_S, "the in-cart view")
    cookie = shopper.driver.get_cookie("bb_session")
    assert cookie and cookie["httpOnly"]

    shopper.driver.refresh()
    shopper.wait_live()
    assert shopper.find("#remove-from-cart").is_displayed() and not shopper.find("#add-to-cart").is_displayed()
    assert shopper.text(".in-cart-note") == "One copy is in your cart."
    assert shopper.count() == count - 1
    # the same cookie on the other instance (cookies ignore the port): the same cart,
    # as every instance of the cluster signs sessions with the same secret
    shopper.get(f"{cluster.app_base('app-2')}/books/{SKU}")
    shopper.wait_live()
    assert shopper.instance() == "app-2"
    assert shopper.find("#remove-from-cart").is_displayed()
    assert shopper.driver.get_cookie("bb_session")["value"] == cookie["value"]

    stranger = browser.open(f"{cluster.base}/books/{SKU}", name="another-profile")
    stranger.wait_live()
    assert stranger.driver.get_cookie("bb_session")["value"] != cookie["value"]
    assert stranger.find("#add-to-cart").is_displayed() and not stranger.find("#remove-from-cart").is_displayed()
    assert stranger.count() == count - 1

    shopper.find("#remove-button").click()
    stranger.wait(lambda: stranger.count() == count, LIVE_UPDATE_S, f"the count back at {count}")
    shopper.driver.refresh()
    assert shopper.find("#add-to-cart").is_displayed() and shopper.count() == count


def test_sold_out_disables_add_in_every_window_and_the_holder_can_still_remove(cluster, browser, shop):
    sku = "async"
    shop.set_stock(sku, 1)  # the `shop` fixture puts the stock back
    holder = browser.open(f"{cluster.app_base('app-1')}/books/{sku}", name="holder")
    other = browser.open(f"{cluster.app_base('app-2')}/books/{sku}", name="other")
    for window in (holder, other):
        window.wait_live()
        assert window.count() == 1 and window.text("#stock") == "Only 1 left in stock! Order now!"

    holder.find("#add-button").click()
    other.wait(lambda: not other.find("#add-button").is_enabled(), LIVE_UPDATE_S, "Add disabled")
    for window in (holder, other):
        window.wait(lambda w=window: w.text("#stock") == "Sold out: 0 left in stock", LIVE_UPDATE_S,
                    "the stock line saying sold out")
    assert other.find("#add-button").text == "Sold out"
    holder.wait(lambda: holder.find("#remove-button").is_displayed(), LIVE_UPDATE_S, "the Remove button")
    assert holder.find("#remove-button").is_enabled()
    # a window opened now is sold out from the start (no JavaScript needed for that)
    late = browser.open(f"{cluster.base}/books/{sku}", name="late")
    assert not late.find("#add-button").is_enabled() and late.find("#add-button").text == "Sold out"

    holder.find("#remove-button").click()
    for window in (other, late):
        window.wait(lambda w=window: w.find("#add-button").is_enabled(), LIVE_UPDATE_S, "Add enabled again")
        assert window.find("#add-button").text == "Add to Cart" and window.count() == 1
    holder.wait(lambda: holder.find("#add-button").is_displayed(), LIVE_UPDATE_S, "the Add view again")


# The window below does not hear about changes: its WebSocket cannot be built and its
# long-polls are blocked by the browser, so it still shows a copy that another shopper
# has just taken, as a window does whose update is still on its way.
DEAF = """window.WebSocket = function () { throw new DOMException('blocked', 'SecurityError'); };"""


def test_losing_the_race_for_the_last_copy_shows_a_clear_message(cluster, browser, shop):
    sku = "async"
    shop.set_stock(sku, 1)
    window = browser.open(name="slow-to-hear", before_load=DEAF)
    window.driver.execute_cdp_cmd("Network.enable", {})
    window.driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/cart/status*"]})
    window.get(f"{cluster.base}/books/{sku}")
    window.wait(lambda: window.transport() == "reconnecting", 10, "live updates failing")
    assert window.count() == 1 and window.find("#add-button").is_enabled()

    winner = shop.shopper()
    assert shop.post(winner, "add", sku)[0] == 200
    window.find("#add-button").click()
    window.wait(lambda: window.text("#cart-message"), 5, "a message")
    assert window.text("#cart-message") == "Sorry, the last copy just went to another shopper."
    assert "error" in window.find("#cart-message").get_attribute("class")
    # the 409 carried the current count: the page shows it and stops offering the book
    assert window.count() == 0
    assert not window.find("#add-button").is_enabled() and window.find("#add-button").text == "Sold out"
    assert window.find("#add-to-cart").is_displayed() and not window.find("#remove-from-cart").is_displayed()
    assert shop.post(winner, "remove", sku)[0] == 200
