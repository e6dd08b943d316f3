"""Fixtures for the browser tests: real headless Chromium windows on a real cluster.

* `cluster` - session scope: one `python -m service up` (supervisord, redis-server, the
              upstream simulator, two instances, nginx) on free ports, from
              tests/support/deployment.py; stopped with SIGTERM at the end.
* `browser` - function scope: `browser.open(url)` opens a window in a new Chromium
              profile, so every window is a different shopper with its own cookies;
              `before_load=` runs a script in the page before the shop's own.
              Every window is closed at teardown.
* `shop`    - autouse: remembers every book's stock and holds before the test and puts
              them back afterwards if the test did not (so a failed test breaks no other);
              also posts cart changes as another shopper, sets stock like an operator.

On a failure every open window saves a screenshot, its console log and its HTML under
var/e2e-artifacts/<test>/, and the failure report lists their paths.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from service import redis_keys as keys
from support import browser as chromium
from support.deployment import ROOT, Deployment

ARTIFACTS = ROOT / "var" / "e2e-artifacts"
INSTANCES = 2


# --------------------------------------------------------------------------- the cluster

@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    missing = chromium.missing()
    if missing:
        pytest.skip(f"browser tests need {', '.join(missing)}: run `make deps-browser` "
                    "(apt-get install chromium chromium-driver) and `make venv`")
    deployment = Deployment(tmp_path_factory.mktemp("e2e") / "var", instances=INSTANCES)
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()


# --------------------------------------------------------------------------- inventory

class Shop:
    """Stock and carts as Redis holds them, changed the way a shopper or operator would."""

    def __init__(self, cluster: Deployment):
        self.cluster = cluster
        self.redis = cluster.redis()

    def books(self) -> list[dict]:
        with urllib.request.urlopen(f"{self.cluster.base}/api/books", timeout=10) as reply:
            return json.loads(reply.read())

    def state(self) -> dict[str, tuple[int, frozenset]]:
        """Every book's stock and the sessions holding a copy."""
        return {book["sku"]: (int(self.redis.get(keys.stock_key(book["sku"]))),
                              frozenset(self.redis.zrange(keys.holds_key(book["sku"]), 0, -1)))
                for book in self.books()}

    def set_stock(self, sku: str, stock: int) -> str:
        """`python -m service stock set`, as an operator restocks (every window is told)."""
        result = subprocess.run(
            [sys.executable, "-m", "service", "stock", "set", sku, str(stock)], cwd=ROOT,
            capture_output=True, text=True, timeout=30,
            env={**os.environ, **self.cluster.redis_env})
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def post(self, token: str, action: str, sku: str, base: str | None = None) -> tuple[int, dict]:
        """POST /cart as another shopper (a plain HTTP client, like the seed's clients)."""
        request = urllib.request.Request(
            f"{base or self.cluster.base}/cart", method="POST",
            data=json.dumps({"session": token, "action": action, "sku": sku}).encode(),
            headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def shopper(self) -> str:
        """A new shopper's signed session token."""
        return self.cluster.session()[1]


@pytest.fixture(autouse=True)
def shop(cluster):
    shop = Shop(cluster)
    before = shop.state()
    yield shop
    after = shop.state()
    for sku, (stock, holds) in before.items():
        if after.get(sku) == (stock, holds):
            continue
        extra = after[sku][1] - holds
        if extra:
            shop.redis.zrem(keys.holds_key(sku), *extra)
        shop.set_stock(sku, stock)  # also tells every window the restored count
    shop.redis.close()


# --------------------------------------------------------------------------- windows

class Window:
    """One Chromium window (its own profile) and what a test reads from the shop page."""

    def __init__(self, driver, name: str):
        self.driver = driver
        self.name = name
        self.console: list[dict] = []  # reading the browser log drains it; keep it here

    def get(self, url: str) -> Window:
        self.driver.get(url)
        return self

    def find(self, css: str):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        """The text a shopper sees in the first element matching `css`."""
        return self.find(css).text

    def count(self) -> int:
        """The book page's live count."""
        return int(self.text("#count"))

    def counts(self) -> dict[str, int]:
        """The catalog's count of every book."""
        return {el.get_attribute("data-sku"): int(el.text) for el in self.find_all(".count[data-sku]")}

    def transport(self) -> str:
        return self.find("#live-status").get_attribute("data-transport")

    def instance(self) -> str:
        return self.find("#live-status").get_attribute("data-instance")

    def click_and_load(self, css: str, timeout_s: float = 10) -> None:
        """Click something that loads a new page (a form post without JavaScript), and wait
        until the new page has replaced the old one: click() may return before that."""
        element = self.find(css)
        element.click()
        self.wait(lambda: expected_conditions.staleness_of(element)(self.driver), timeout_s,
                  f"a new page after clicking {css}")
        # the old page is gone once its elements are stale, but a post's answer (303, then
        # the page) may still be replacing the document: an element found meanwhile could
        # belong to neither (seen once in CI: "Node … does not belong to the document")
        self.wait(lambda: self.js("return document.readyState") == "complete", timeout_s,
                  f"the page after clicking {css} loaded")

    def js(self, script: str, *args):
        return self.driver.execute_script(script, *args)

    def wait(self, check, timeout_s: float, what: str):
        """Poll `check()` (every 20 ms) until it is truthy; fail naming `what` and the page."""
        try:
            return WebDriverWait(self.driver, timeout_s, poll_frequency=0.02, ignored_exceptions=(
                NoSuchElementException, StaleElementReferenceException, ValueError)).until(
                lambda _: check())
        except TimeoutException:
            raise AssertionError(f"{self.name}: {what} within {timeout_s} s; the page shows "
                                 f"{self.summary()}") from None

    def wait_live(self, *transports: str, timeout_s: float = 10):
        """Until the indicator says the page gets live updates (by one of `transports`)."""
        wanted = transports or ("websocket", "longpoll")
        self.wait(lambda: self.transport() in wanted, timeout_s,
                  f"live updates by {' or '.join(wanted)}")

    def record_transports(self) -> None:
        """From now on, remember every state the live indicator goes through."""
        self.js("""
            var el = document.getElementById('live-status');
            window.__transports = [el.getAttribute('data-transport')];
            new MutationObserver(function () {
              var t = el.getAttribute('data-transport');
              if (window.__transports[window.__transports.length - 1] !== t) window.__transports.push(t);
            }).observe(el, {attributes: true, attributeFilter: ['data-transport']});""")

    def transports_seen(self) -> list[str]:
        return self.js("return window.__transports || []")

    def browser_log(self) -> list[dict]:
        self.console += self.driver.get_log("browser")
        return self.console

    def summary(self) -> str:
        try:
            status = self.find("#live-status")
            return (f"status {status.text!r} (transport {status.get_attribute('data-transport')}, "
                    f"instance {status.get_attribute('data-instance')}); url {self.driver.current_url}; "
                    f"text: {self.find('main').text[:300]!r}")
        except Exception as exc:
            return f"(unreadable: {exc})"

    def save_artifacts(self, folder: Path) -> list[Path]:
        """Screenshot, console log and HTML, for a failure report."""
        saved = []
        stem = folder / self.name
        try:
            if self.driver.save_screenshot(str(stem) + ".png"):
                saved.append(Path(str(stem) + ".png"))
        except Exception:
            pass
        try:
            lines = [f"{e['level']} {e['message']}" for e in self.browser_log()]
        except Exception as exc:
            lines = [f"(console unavailable: {exc})"]
        console = Path(str(stem) + ".console.log")
        console.write_text("\n".join(lines) + "\n")
        saved.append(console)
        try:
            html = Path(str(stem) + ".html")
            html.write_text(self.driver.page_source)
            saved.append(html)
        except Exception:
            pass
        return saved


class Browser:
    """Opens windows, each a new Chromium profile; closes them all at teardown."""

    def __init__(self):
        self.windows: list[Window] = []

    def open(self, url: str | None = None, *, name: str | None = None, javascript: bool = True,
             before_load: str | None = None) -> Window:
        driver = chromium.new_driver(javascript=javascript)
        window = Window(driver, name or f"window-{len(self.windows) + 1}")
        self.windows.append(window)
        if before_load:
            # runs in every document of this window before any of the page's scripts
            driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": before_load})
        if url:
            window.get(url)
        return window

    def close(self) -> None:
        for window in self.windows:
            try:
                window.driver.quit()
            except Exception:
                pass
        self.windows.clear()


@pytest.fixture
def browser():
    opened = Browser()
    try:
        yield opened
    finally:
        opened.close()


# --------------------------------------------------------------------------- failures

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed or report.when not in ("setup", "call"):
        return
    opened = getattr(item, "funcargs", {}).get("browser")
    lines = []
    if opened is not None and opened.windows:
        folder = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", item.nodeid.split("::", 1)[-1])
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        for window in opened.windows:
            lines += [str(path) for path in window.save_artifacts(folder)]
    cluster = getattr(item, "funcargs", {}).get("cluster")
    if cluster is not None:
        lines.append(f"cluster logs: {cluster.var_dir / 'log'}")
    if lines:
        report.sections.append(("e2e artifacts (screenshots, console logs, HTML)", "\n".join(lines)))
