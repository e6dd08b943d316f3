"""The shop's pages and its catalog API: `/`, `/books`, `/books/<sku>`, `/api/books`."""

from __future__ import annotations

import dataclasses
import json
import math

from service.config import Config
from service.inventory import Book
from service.web import limits
from service.web.base import BaseHandler
from service.web.errors import ApiError, unknown_sku


def live_timing(config: Config) -> dict[str, float]:
    """What the page's script must know of this server's timing (data-* attributes)."""
    return {"longpoll_s": config.longpoll_timeout_s, "heartbeat_s": config.heartbeat_s}


class BookPageHandler(BaseHandler):
    """`/` (the featured book, seed listing 5-5) and `/books/<sku>`."""

    async def get(self, sku: str | None = None) -> None:
        catalog = self.services.catalog
        book = catalog.get(sku or catalog.featured)
        if book is None:
            raise unknown_sku(sku or "")
        session_id, token = self.session()
        snapshot = await self.services.store.snapshot(book.sku)
        in_cart = await self.services.store.in_cart(book.sku, session_id)
        self.services.hub.apply(snapshot)
        self.set_header("Cache-Control", "no-store")
        self.render("book.html", book=book, snapshot=snapshot, session=token, in_cart=in_cart,
                    instance=self.services.config.instance_id, count=snapshot.count,
                    live=live_timing(self.services.config))


@dataclasses.dataclass(frozen=True)
class Page:
    """One page of the catalog."""
    books: tuple[Book, ...]
    number: int
    per_page: int
    total: int

    @property
    def last(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))


class CatalogPaging(BaseHandler):
    """`page` (from 1) and `per_page` arguments, validated; 400 for anything else."""

    def catalog_page(self, default_per_page: int, max_per_page: int) -> Page:
        number = self._whole("page", 1, 1, 10**9)
        per_page = self._whole("per_page", default_per_page, 1, max_per_page)
        books = self.services.catalog.books
        start = (number - 1) * per_page
        return Page(books[start:start + per_page], number, per_page, len(books))

    def _whole(self, name: str, default: int, minimum: int, maximum: int) -> int:
        raw = self.get_query_argument(name, None)
        if raw is None:
            return default
        if not (raw.isascii() and raw.isdigit()) or not minimum <= int(raw) <= maximum:
            raise ApiError(400, f"bad_{name}", f"{name} must be a whole number from "
                           f"{minimum} to {maximum}, not {raw[:20]!r}")
        return int(raw)


class CatalogPageHandler(CatalogPaging):
    """`/books?page=N`: a page of the catalog; the page's script watches only its books."""

    async def get(self) -> None:
        _, token = self.session()
        page = self.catalog_page(limits.BOOKS_PER_PAGE, limits.BOOKS_PER_PAGE)
        snapshots = await self.services.store.snapshots([b.sku for b in page.books])
        self.set_header("Cache-Control", "no-store")
        self.render("books.html", items=list(zip(page.books, snapshots)), page=page,
                    session=token, instance=self.services.config.instance_id,
                    live=live_timing(self.services.config))


class BooksApiHandler(CatalogPaging):
    """`/api/books?page=&per_page=` (a JSON list, as always; `X-Total-Count` and a `Link`
    to the next page), or `?sku=…&sku=…` for those books only."""

    async def get(self) -> None:
        if self.get_query_arguments("sku"):
            skus = self.requested_skus()
            books = [book for book in map(self.services.catalog.get, skus) if book]
        else:
            page = self.catalog_page(limits.API_BOOKS_PER_PAGE, limits.API_MAX_BOOKS_PER_PAGE)
            books = list(page.books)
            self.set_header("X-Total-Count", page.total)
            if page.number < page.last:
                self.set_header("Link", f'</api/books?page={page.number + 1}'
                                        f'&per_page={page.per_page}>; rel="next"')
        snapshots = await self.services.store.snapshots([b.sku for b in books])
        self.write_json(json.dumps([
            {"sku": b.sku, "title": b.title, "author": b.author, "price": b.price,
             "inventoryCount": s.count, "version": s.version, "epoch": s.epoch,
             "changedAt": s.changed_at_ms}
            for b, s in zip(books, snapshots)]).encode())
