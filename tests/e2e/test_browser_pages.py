"""The pages in a real browser: tweets per second from its form, keyboard and screen
reader basics, and the shop without JavaScript."""

from __future__ import annotations

from selenium.webdriver.common.keys import Keys

from support.browser import LIVE_UPDATE_S


def test_the_tweets_per_second_page_renders_a_typed_query_and_shows_markup_as_text(cluster, browser):
    window = browser.open(cluster.base + "/rate?q=tornado", name="rate")
    assert window.text(".rate-query") == "tornado"

    for query in ("pants", "<script>window.__xss = 1</script><b>bold</b> & more"):
        field = window.find("#q")
        field.clear()
        field.send_keys(query, Keys.ENTER)
        window.wait(lambda q=query: window.text(".rate-query") == q, 10, f"the result for {query!r}")
        assert window.text(".rate-unit") == "tweets per second"
        assert float(window.text(".rate-number")) >= 0
        assert window.find("#q").get_attribute("value") == query
    # shown as text, never run or parsed as markup
    assert window.js("return window.__xss") is None
    assert not window.find_all(".rate-query *") and not window.find_all("main script")
    assert "<script>" in window.driver.title


def test_buttons_live_regions_and_the_keyboard(cluster, browser):
    window = browser.open(cluster.base + "/", name="keyboard")
    window.wait_live()
    assert window.find("html").get_attribute("lang") == "en"
    for button in window.find_all(".cart-form button"):
        assert button.tag_name == "button" and button.get_attribute("type") == "submit"
    assert window.js("return document.getElementById('count').closest('[aria-live]').id") == "stock"
    assert window.find("#stock").get_attribute("aria-live") == "polite"
    assert window.find("#cart-message").get_attribute("role") == "status"
    assert window.find(".cover").get_attribute("alt")
    count = window.count()

    def focused() -> str:
        return window.driver.switch_to.active_element.get_attribute("id")

    for _ in range(20):  # Tab through the header's links to the button
        if focused() == "add-button":
            break
        window.driver.switch_to.active_element.send_keys(Keys.TAB)
    assert focused() == "add-button"
    window.driver.switch_to.active_element.send_keys(Keys.ENTER)
    # after Add, focus moves to Remove (the Add button is hidden), so Space removes
    window.wait(lambda: focused() == "remove-button", LIVE_UPDATE_S, "focus on Remove")
    assert window.count() == count - 1 and window.text(".in-cart-note") == "One copy is in your cart."
    window.driver.switch_to.active_element.send_keys(Keys.SPACE)
    window.wait(lambda: focused() == "add-button", LIVE_UPDATE_S, "focus back on Add")
    assert window.count() == count

    catalog = browser.open(cluster.base + "/books", name="catalog")
    for count_el in catalog.find_all(".count[data-sku]"):
        region = catalog.js("return arguments[0].closest('[aria-live]')", count_el)
        assert region is not None and region.get_attribute("aria-live") == "polite"


def test_without_javascript_the_forms_post_and_the_page_shows_the_count(cluster, browser):
    window = browser.open(cluster.base + "/books/tornado", name="no-javascript", javascript=False)
    count = window.count()
    assert window.text("#stock") == f"Only {count} left in stock! Order now!"
    assert window.text("#live-status").startswith("served by app-")
    assert not window.find("#remove-from-cart").is_displayed()

    window.click_and_load("#add-button")  # a plain form post, answered 303 to the page
    assert window.driver.current_url == cluster.base + "/books/tornado"
    assert window.find("#remove-from-cart").is_displayed() and not window.find("#add-to-cart").is_displayed()
    assert window.text(".in-cart-note") == "One copy is in your cart."
    assert window.count() == count - 1

    window.click_and_load("#remove-button")
    assert window.driver.current_url == cluster.base + "/books/tornado"
    assert window.find("#add-to-cart").is_displayed() and window.count() == count

    window.get(cluster.base + "/books")
    assert window.counts()["tornado"] == count
