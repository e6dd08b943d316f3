"""Demo catalogs at shop scale (`python -m service catalog generate`).

The shop's own books come first, then generated titles up to the number asked for, each
marked `"demo": true` so nobody mistakes them for real stock. The same arguments always
give the same file: every choice comes from one `random.Random(seed)`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
from pathlib import Path
from typing import Any

from service.inventory.catalog import Catalog
from service.paths import DEFAULT_CATALOG

# beyond this a demo catalog is no longer a demo: seeding and sweeping go per SKU
MAX_BOOKS = 100_000
MAX_COPIES = 1_000_000
DEFAULT_SEED = 1
# stock of a generated book when no --copies is given: a spread, some nearly sold out
STOCK_RANGE = (1, 50)
# whole-euro prices plus one of the usual endings; stays within 5.00..60.00
PRICE_EUROS = (5, 59)
PRICE_CENTS = (0.0, 0.5, 0.95, 0.99)
SKU_PREFIX = "demo-"
SKU_DIGITS = len(str(MAX_BOOKS - 1))  # demo-00042: every SKU the same width, sorts in order

ADJECTIVES = ("Quiet", "Patient", "Gentle", "Practical", "Reliable", "Hidden", "Curious",
              "Lazy", "Eager", "Humble", "Elegant", "Brave", "Careful", "Restless",
              "Graceful", "Stubborn", "Honest", "Modest", "Tireless", "Fearless")
TOPICS = ("Event Loops", "Coroutines", "Long Polling", "WebSockets", "Pub/Sub", "Lua Scripts",
          "Connection Pools", "Back Pressure", "Caches", "Load Balancers", "Shopping Carts",
          "Reverse Proxies", "Health Checks", "Graceful Shutdown", "Rate Limits", "Retries",
          "Timeouts", "Sorted Sets", "Sockets", "Queues", "Futures", "Callbacks",
          "Stock Counts", "Keep-Alive", "Supervisors", "Metrics", "Deadlines", "Streams",
          "Race Conditions", "Idempotency")
PATTERNS = ("The {adj} Art of {topic}", "{topic} in Practice", "A {adj} Guide to {topic}",
            "{topic} for the {adj} Programmer", "Notes on {topic}", "{adj} {topic}",
            "Mastering {topic}", "{topic}, Explained", "The Little Book of {topic}",
            "{topic} and {other}")
FIRST_NAMES = ("Ada", "Alan", "Barbara", "Brendan", "Carla", "Dennis", "Edsger", "Frances",
               "Grace", "Guido", "Hedy", "Ivan", "Joan", "Ken", "Leslie", "Linus", "Margaret",
               "Niklaus", "Olga", "Radia", "Sophie", "Tim", "Ursula", "Yukihiro")
LAST_NAMES = ("Abbott", "Berg", "Carlson", "Dory", "Ellis", "Fischer", "Garcia", "Hopper",
              "Ito", "Jensen", "Kowalski", "Lambert", "Moreau", "Novak", "Okafor", "Parrish",
              "Quinn", "Rossi", "Schmidt", "Tanaka", "Umar", "Varga", "Weber", "Young")


class DemoCatalogError(ValueError):
    """The demo catalog cannot be made as asked; the message names the fix."""


@dataclasses.dataclass(frozen=True)
class Written:
    """What `write_catalog` wrote."""
    path: Path
    books: int
    from_shop: int

    @property
    def generated(self) -> int:
        return self.books - self.from_shop

    def summary(self) -> str:
        return (f"wrote {self.books} books ({self.from_shop} from the shop, "
                f"{self.generated} generated) to {self.path}")


def shop_books(shop: Path = DEFAULT_CATALOG) -> Catalog:
    """The shop's own catalog, whose books open every demo catalog."""
    return Catalog.load(shop)


def check_request(books: int, copies: int | None, shop: Catalog) -> None:
    """Refuse counts no catalog can be made of. Raises DemoCatalogError."""
    minimum = len(shop.books)
    if not minimum <= books <= MAX_BOOKS:
        raise DemoCatalogError(f"--books {books} is out of range: give between {minimum} (the "
                               f"shop's own books) and {MAX_BOOKS}")
    if copies is not None and not 1 <= copies <= MAX_COPIES:
        raise DemoCatalogError(f"--copies {copies} is out of range: give between 1 and "
                               f"{MAX_COPIES}, or leave it out for a spread of "
                               f"{STOCK_RANGE[0]}..{STOCK_RANGE[1]}")


def check_writable(path: Path) -> None:
    """Refuse an --out path that cannot be written, before anything is generated."""
    folder = path.parent
    if path.is_dir():
        raise DemoCatalogError(f"--out {path} is a directory: give a file name, e.g. "
                               f"{path / 'catalog.json'}")
    if not folder.is_dir():
        raise DemoCatalogError(f"--out {path}: the directory {folder} does not exist; "
                               f"create it first (mkdir -p {folder})")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise DemoCatalogError(f"--out {path} is not writable: choose another path")


def sku(number: int) -> str:
    """The SKU of generated book `number` (1-based): demo-00042."""
    return f"{SKU_PREFIX}{number:0{SKU_DIGITS}d}"


def _title(rng: random.Random) -> str:
    topic, other = rng.sample(TOPICS, 2)
    return rng.choice(PATTERNS).format(adj=rng.choice(ADJECTIVES), topic=topic, other=other)


def _author(rng: random.Random) -> str:
    def name() -> str:
        return f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
    # about one book in five has two authors, as on a real shelf
    return f"{name()} & {name()}" if rng.random() < 0.2 else name()


def _price(rng: random.Random) -> float:
    return round(rng.randint(*PRICE_EUROS) + rng.choice(PRICE_CENTS), 2)


def generate(books: int, copies: int | None = None, seed: int = DEFAULT_SEED,
             shop: Catalog | None = None) -> dict[str, Any]:
    """A demo catalog as JSON data: the shop's books, then generated ones up to `books`."""
    shop = shop_books() if shop is None else shop
    check_request(books, copies, shop)
    rng = random.Random(seed)
    entries: list[dict[str, Any]] = []
    for book in shop.books:
        entry = dataclasses.asdict(book)
        if copies is not None:
            entry["stock"] = copies
        entries.append(entry)
    covers = [book.cover for book in shop.books if book.cover] or [""]
    for number in range(1, books - len(shop.books) + 1):
        entries.append({
            "sku": sku(number), "title": _title(rng), "author": _author(rng),
            "price": _price(rng),
            "stock": copies if copies is not None else rng.randint(*STOCK_RANGE),
            "cover": covers[(number - 1) % len(covers)],
            "blurb": f"Demo title #{number}, generated for load tests: not a real book.",
            "demo": True})
    return {"demo": True, "featured": shop.featured, "books": entries}


def to_json(catalog: dict[str, Any]) -> str:
    """The catalog as text: one book a line, so diffs and `grep` stay readable."""
    books = ",\n".join(f"    {json.dumps(book, ensure_ascii=False)}" for book in catalog["books"])
    head = {key: value for key, value in catalog.items() if key != "books"}
    fields = "".join(f"  {json.dumps(key)}: {json.dumps(value)},\n" for key, value in head.items())
    return f'{{\n{fields}  "books": [\n{books}\n  ]\n}}\n'


def write_catalog(path: Path, books: int, copies: int | None = None,
                  seed: int = DEFAULT_SEED) -> Written:
    """Check the request, generate and write the catalog. Raises DemoCatalogError."""
    shop = shop_books()
    check_request(books, copies, shop)
    check_writable(path)
    text = to_json(generate(books, copies, seed, shop))
    # written beside and renamed, so a reader (or a failed write) never sees half a file
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise DemoCatalogError(f"--out {path}: cannot write ({exc}); choose another path") \
            from None
    return Written(path=path, books=books, from_shop=len(shop.books))
