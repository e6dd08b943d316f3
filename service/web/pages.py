"""The shop's pages and its catalog API: `/`, `/books`, `/books/<sku>`, `/api/books`."""

from __future__ import annotations

import json

from service.web.base import BaseHandler
from service.web.errors import unknown_sku


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
                    instance=self.services.config.instance_id, count=snapshot.count)


class CatalogPageHandler(BaseHandler):
    async def get(self) -> None:
        _, token = self.session()
        snapshots = await self.services.store.snapshots(self.services.catalog.skus)
        self.set_header("Cache-Control", "no-store")
        self.render("books.html", items=list(zip(self.services.catalog.books, snapshots)),
                    session=token, instance=self.services.config.instance_id)


class BooksApiHandler(BaseHandler):
    async def get(self) -> None:
        snapshots = await self.services.store.snapshots(self.services.catalog.skus)
        self.write_json(json.dumps([
            {"sku": b.sku, "title": b.title, "author": b.author, "price": b.price,
             "inventoryCount": s.count, "version": s.version, "epoch": s.epoch}
            for b, s in zip(self.services.catalog.books, snapshots)]).encode())
