"""Inventory in Redis: snapshots, and one atomic Lua script per kind of change."""

from __future__ import annotations

import secrets
from typing import Any

import redis.asyncio as aioredis

from service import redis_keys
from service.inventory import scripts
from service.inventory.catalog import Catalog
from service.inventory.snapshot import CartResult, Snapshot, SoldOut, StockBelowHolds, UnknownSku


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class InventoryStore:
    """The inventory operations; Redis holds all state, this object holds none."""

    def __init__(self, redis: aioredis.Redis, catalog: Catalog, hold_ttl_s: float):
        self.redis = redis
        self.catalog = catalog
        self.hold_ttl_ms = int(hold_ttl_s * 1000)
        self._add = redis.register_script(scripts.ADD)
        self._remove = redis.register_script(scripts.REMOVE)
        self._set_stock = redis.register_script(scripts.SET_STOCK)
        self._sweep = redis.register_script(scripts.SWEEP)
        self._seed = redis.register_script(scripts.SEED)
        self._read = redis.register_script(scripts.READ)

    def _args(self, sku: str, *extra: str | int) -> list[str | int]:
        return [redis_keys.INVENTORY_CHANNEL, sku, *extra]

    def _known(self, sku: str) -> str:
        if sku not in self.catalog:
            raise UnknownSku(sku)
        return sku

    async def seed(self) -> int:
        """Create every catalog SKU missing from Redis; returns how many were created."""
        created = 0
        for book in self.catalog.books:
            created += int(await self._seed(
                keys=redis_keys.sku_keys(book.sku),
                args=self._args(book.sku, book.stock, secrets.token_hex(8))))
        return created

    async def _read_rows(self, skus: list[str]) -> list[Any]:
        """The READ script's row of every SKU, in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for sku in skus:
                await self._read(keys=redis_keys.sku_keys(sku), args=[], client=pipe)
            return list(await pipe.execute())

    async def snapshots(self, skus: list[str]) -> list[Snapshot]:
        """Current snapshots, read atomically per SKU in one round trip."""
        rows = await self._read_rows([self._known(sku) for sku in skus])
        result = []
        for sku, row in zip(skus, rows):
            if not row:
                raise UnknownSku(sku)
            result.append(Snapshot(sku, int(row[0]), int(row[1]), _text(row[2])))
        return result

    async def snapshot(self, sku: str) -> Snapshot:
        return (await self.snapshots([sku]))[0]

    async def stock_report(self) -> list[dict[str, Any]]:
        """Stock, holds and count of every book (for `stock show` and the admin page)."""
        rows = await self._read_rows(self.catalog.skus)
        return [{"sku": sku, "stock": int(r[3]), "holds": int(r[4]), "count": int(r[0]),
                 "version": int(r[1]), "epoch": _text(r[2])} if r else
                {"sku": sku, "stock": None, "holds": None, "count": None, "version": None,
                 "epoch": None}
                for sku, r in zip(self.catalog.skus, rows)]

    async def in_cart(self, sku: str, session_id: str) -> bool:
        score = await self.redis.zscore(redis_keys.holds_key(self._known(sku)), session_id)
        return score is not None

    def _result(self, sku: str, row: list[Any]) -> CartResult:
        status = _text(row[0])
        if status == "unknown":
            raise UnknownSku(sku)
        snapshot = Snapshot(sku, int(row[1]), int(row[2]), _text(row[3]))
        if status == "sold_out":
            raise SoldOut(snapshot)
        return CartResult(snapshot, bool(int(row[4])))

    async def add(self, sku: str, session_id: str) -> CartResult:
        """Hold one copy for the session (idempotent). Raises SoldOut, UnknownSku."""
        row = await self._add(keys=redis_keys.sku_keys(self._known(sku)),
                              args=self._args(sku, session_id, self.hold_ttl_ms))
        return self._result(sku, row)

    async def remove(self, sku: str, session_id: str) -> CartResult:
        """Release the session's copy, if it holds one (idempotent)."""
        row = await self._remove(keys=redis_keys.sku_keys(self._known(sku)),
                                 args=self._args(sku, session_id))
        return self._result(sku, row)

    async def set_stock(self, sku: str, stock: int) -> Snapshot:
        """Set a book's total stock and notify every client. Raises StockBelowHolds."""
        if stock < 0:
            raise ValueError("stock cannot be negative")
        row = await self._set_stock(keys=redis_keys.sku_keys(self._known(sku)),
                                    args=self._args(sku, stock))
        if _text(row[0]) == "below_holds":
            raise StockBelowHolds(f"{sku}: {int(row[1])} copies are held in carts now; "
                                  f"stock cannot go below that")
        return self._result(sku, row).snapshot

    async def sweep(self) -> int:
        """Drop expired holds of every book and publish the changed counts."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for sku in self.catalog.skus:
                await self._sweep(keys=redis_keys.sku_keys(sku), args=self._args(sku),
                                  client=pipe)
            return sum(int(n) for n in await pipe.execute())
