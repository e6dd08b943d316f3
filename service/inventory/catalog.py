"""The books on sale, read from a JSON data file (service/data/books.json by default)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

# SKUs go into Redis key names and, unescaped, into the JSON the Lua scripts publish,
# so they are restricted to characters that need no escaping anywhere.
SKU_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


class CatalogError(ValueError):
    """The catalog file is malformed; the message says where."""


@dataclasses.dataclass(frozen=True)
class Book:
    sku: str
    title: str
    author: str
    price: float
    stock: int  # initial stock, written to Redis only when the SKU does not exist yet
    cover: str = ""
    blurb: str = ""


@dataclasses.dataclass(frozen=True)
class Catalog:
    books: tuple[Book, ...]
    featured: str
    _by_sku: dict[str, Book] = dataclasses.field(init=False, repr=False, compare=False)
    _skus: tuple[str, ...] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_sku", {book.sku: book for book in self.books})
        object.__setattr__(self, "_skus", tuple(book.sku for book in self.books))

    @property
    def skus(self) -> tuple[str, ...]:
        """Every SKU, in catalog order."""
        return self._skus

    def get(self, sku: str) -> Book | None:
        return self._by_sku.get(sku)

    def __contains__(self, sku: object) -> bool:
        return sku in self._by_sku

    @classmethod
    def load(cls, path: Path) -> Catalog:
        """Parse and validate a catalog file. Raises CatalogError."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            entries = data["books"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CatalogError(f"{path}: cannot read the catalog ({exc})") from None
        books = []
        for index, entry in enumerate(entries):
            try:
                book = Book(sku=str(entry["sku"]), title=str(entry["title"]),
                            author=str(entry["author"]), price=float(entry["price"]),
                            stock=int(entry["stock"]), cover=str(entry.get("cover", "")),
                            blurb=str(entry.get("blurb", "")))
            except (KeyError, TypeError, ValueError) as exc:
                raise CatalogError(f"{path}: book #{index + 1} is malformed ({exc})") from None
            if not SKU_PATTERN.match(book.sku):
                raise CatalogError(f"{path}: SKU {book.sku!r} must match {SKU_PATTERN.pattern}")
            if book.stock < 0:
                raise CatalogError(f"{path}: SKU {book.sku!r} has negative stock")
            books.append(book)
        if not books:
            raise CatalogError(f"{path}: the catalog has no books")
        if len({b.sku for b in books}) != len(books):
            raise CatalogError(f"{path}: duplicate SKUs")
        featured = data.get("featured", books[0].sku)
        if featured not in {b.sku for b in books}:
            raise CatalogError(f"{path}: featured SKU {featured!r} is not in the catalog")
        return cls(books=tuple(books), featured=featured)
