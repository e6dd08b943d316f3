"""Headless Chromium for the browser tests and the README's screenshots: Debian's
/usr/bin/chromium driven through /usr/bin/chromedriver, given explicitly so that
selenium-manager never tries to download a browser or a driver."""

from __future__ import annotations

import json
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

# Assertions that something happens "within one second" wait this long: one second plus
# a little slack for the test's own polling of the browser over WebDriver.
LIVE_UPDATE_S = 1.5

# DESIGN.md §8: without the networking flags headless Chromium keeps trying to reach
# outside hosts; --disable-dev-shm-usage because /dev/shm is small in containers.
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--disable-extensions", "--disable-default-apps",
    "--no-default-browser-check", "--mute-audio", "--hide-scrollbars",
    # windows of one test are all "foreground": no timer throttling in any of them
    "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
)


def missing() -> list[str]:
    """What is not installed (empty when the browser tests can run)."""
    return [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]


def new_driver(*, javascript: bool = True, width: int = 1000,
               height: int = 760) -> webdriver.Chrome:
    """A fresh headless Chromium with its own new profile (so its own cookies: a shopper)."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    # the console for failure reports; the performance log shows network events
    # (WebSockets opened, requests sent) to tests that count connections
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    if not javascript:
        options.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2})
    return webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))


def network_events(driver: webdriver.Chrome) -> list[dict]:
    """The DevTools events logged since the last call (each call drains the log)."""
    return [json.loads(entry["message"])["message"] for entry in driver.get_log("performance")]
