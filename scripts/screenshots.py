"""Takes the README's screenshots, docs/screenshots/book.png and catalog.png: a real
cluster (`python -m service up`, two instances, on free ports) in headless Chromium.

Usage: .venv/bin/python scripts/screenshots.py   (or `make screenshots`)
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

from support.browser import missing, new_driver  # noqa: E402
from support.deployment import Deployment  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
MAX_BYTES = 200_000


def shoot(driver, url: str, path: Path) -> None:
    driver.get(url)
    # the badge says "live: WebSocket · via app-N" once the page is connected
    WebDriverWait(driver, 10).until(lambda d: d.find_element("id", "live-status")
                                    .get_attribute("data-transport") == "websocket")
    driver.save_screenshot(str(path))
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise SystemExit(f"{path} is {size} bytes, over {MAX_BYTES}: make the window smaller")
    print(f"wrote {path.relative_to(ROOT)} ({size // 1024} KB)")


def main() -> int:
    if missing():
        print(f"missing: {', '.join(missing())}; run `make deps-browser venv`", file=sys.stderr)
        return 1
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bb-screenshots-"))
    cluster = Deployment(work / "var", instances=2)
    driver = None
    try:
        cluster.start()
        driver = new_driver(width=960, height=560)
        shoot(driver, cluster.base + "/", OUT / "book.png")
        driver.set_window_size(960, 760)
        shoot(driver, cluster.base + "/books", OUT / "catalog.png")
    finally:
        if driver is not None:
            driver.quit()
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
