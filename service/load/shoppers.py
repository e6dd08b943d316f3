"""Shoppers and rate readers: the users that change carts and read tweet rates."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from locust import between, task

from service.load.client import Run, ShopHttpUser
from service.load.popularity import Popularity
from service.load.records import ACKED, RELEASED, UNKNOWN

SESSION_FIELD = re.compile(r'id="session" name="session" value="([^"]+)"')
MAX_HOLDS_PER_SHOPPER = 4
QUERIES = ["tornado", "python", "redis", "nginx", "async", "books", "pants", "coffee",
           "weather", "music", "chess", "linux", "rust", "golang", "docker", "kubernetes",
           "cats", "dogs", "football", "cooking"]


class Shopper(ShopHttpUser):
    """Opens a book page (a session), browses, adds and removes books with think time,
    sometimes tries a sold-out book; records every hold acknowledged and released."""

    wait_time = between(0.3, 1.5)

    def on_start(self) -> None:
        super().on_start()
        self.popularity = Run.catalog(str(self.host))
        self.session = ""
        self.held: set[str] = set()
        self.open_book(self.popularity.pick(self.rng))

    def open_book(self, sku: str) -> None:
        reply = self.call("book page", "GET", f"/books/{sku}", name="/books/[sku]")
        if reply is not None and not self.session:
            found = SESSION_FIELD.search(reply.text)
            self.session = found.group(1) if found else ""

    @task(6)
    def add(self) -> None:
        if not Run.loading() or not self.session:
            return
        if len(self.held) >= MAX_HOLDS_PER_SHOPPER:
            self.change("remove", self.rng.choice(sorted(self.held)))
        self.change("add", self.popularity.pick(self.rng))

    @task(3)
    def remove(self) -> None:
        if Run.loading() and self.held:
            self.change("remove", self.rng.choice(sorted(self.held)))

    @task(1)
    def try_sold_out(self) -> None:
        if Run.loading() and Run.sold_out and self.session:
            self.change("add", self.rng.choice(sorted(Run.sold_out)), kind="cart sold-out try")

    @task(1)
    def browse_catalog(self) -> None:
        if Run.loading():
            pages = max(1, -(-len(Run.skus) // 24))
            self.call("catalog page", "GET", f"/books?page={self.rng.randint(1, pages)}",
                      name="/books?page")

    @task(2)
    def browse_api(self) -> None:
        if not Run.loading():
            return
        skus = self.popularity.pick_distinct(self.rng, 8)
        reply = self.call("api books", "GET", "/api/books?" + urlencode([("sku", s) for s in skus]),
                          name="/api/books?sku")
        if reply is not None and reply.status_code == 200:
            for row in reply.json():
                Run.records.saw(self.client_id, row)
                (Run.sold_out.add if row["inventoryCount"] <= 0 else Run.sold_out.discard)(
                    row["sku"])

    @task(1)
    def view_book(self) -> None:
        if Run.loading():
            self.open_book(self.popularity.pick(self.rng))

    def change(self, action: str, sku: str, kind: str | None = None) -> None:
        reply = self.call(kind or f"cart {action}", "POST", "/cart", name="/cart",
                          data={"session": self.session, "action": action, "sku": sku})
        status = reply.status_code if reply is not None else None
        body: dict[str, Any] | None = reply.json() if status in (200, 409) else None
        if body is not None:
            Run.records.saw(self.client_id, body)
        if status == 200 and body is not None:
            if action == "add":
                self.held.add(sku)
                Run.records.hold(self.session, sku, ACKED, int(body.get("serverTime", 0)))
            else:
                self.held.discard(sku)
                Run.records.hold(self.session, sku, RELEASED)
        elif status == 409:
            Run.sold_out.add(sku)
        elif status != 429:
            # unconfirmed or failed: the change may or may not have been kept
            self.held.discard(sku)
            Run.records.hold(self.session, sku, UNKNOWN)


class RateReader(ShopHttpUser):
    """Reads tweets per second over a pool of queries: cache hits, misses, coalescing."""

    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        super().on_start()
        self.queries = Popularity(QUERIES)

    @task(2)
    def api(self) -> None:
        if not Run.loading():
            return
        query = self.queries.pick(self.rng)
        reply = self.call("rate api", "GET", f"/api/rate?q={query}", name="/api/rate")
        if reply is not None and reply.status_code == 200:
            Run.records.cache[reply.json().get("cache", "?")] += 1

    @task(1)
    def page(self) -> None:
        if Run.loading():
            self.call("rate page", "GET", f"/rate?q={self.queries.pick(self.rng)}", name="/rate")
