"""Inventory in Redis: snapshots, and one atomic Lua script per kind of change."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from service import redis_keys
from service.inventory import address_holds, scripts
from service.inventory.address_holds import AddressHolds
from service.inventory.bookkeeping import Bookkeeping
from service.inventory.catalog import Catalog
from service.inventory.clock import RedisClock
from service.inventory.per_book import per_book
from service.inventory.replication import NotConfirmed, ReplicaConfirm
from service.inventory.snapshot import (
    CartResult,
    Hold,
    Snapshot,
    SoldOut,
    StockBelowHolds,
    UnknownSku,
    as_text,
)
from service.inventory.sweeper import HoldSweeper
from service.redis_nodes import RedisNodes


class InventoryStore:
    """The inventory operations; Redis holds all state, this object holds none (but its
    estimate of the Redis clock)."""

    def __init__(self, redis: aioredis.Redis, catalog: Catalog, hold_ttl_s: float,
                 clock: RedisClock | None = None, hold_max_s: float = 3600.0,
                 max_holds_per_address: int = 0, confirm: ReplicaConfirm | None = None,
                 nodes: RedisNodes | None = None):
        self.redis = redis  # a RedisCluster on a cluster: it routes single commands itself
        # where work on many books, and changes that WAIT, are sent (service/redis_nodes.py)
        self.nodes = nodes or RedisNodes(redis)
        self.catalog = catalog
        self.hold_ttl_ms = int(hold_ttl_s * 1000)
        self.hold_max_ms = int(hold_max_s * 1000)
        # None: no cap per address (0 in BB_MAX_HOLDS_PER_ADDRESS)
        self.address_holds = AddressHolds(self.nodes, max_holds_per_address, self.hold_ttl_ms,
                                          self.hold_max_ms) if max_holds_per_address else None
        self.clock = clock or RedisClock()
        # Sentinel and Cluster mode: a cart change waits for a replica (replication.py)
        self.confirm = confirm
        self._add = redis.register_script(scripts.ADD)
        self._remove = redis.register_script(scripts.REMOVE)
        self._set_stock = redis.register_script(scripts.SET_STOCK)
        self._reset = redis.register_script(scripts.RESET)
        self._seed = redis.register_script(scripts.SEED)
        self._read = redis.register_script(scripts.READ)
        self.sweeper = HoldSweeper(self.nodes, catalog, self.clock,
                                   redis.register_script(scripts.SWEEP))
        # what a change also writes under other hash tags (maybe on another shard)
        self.bookkeeping = Bookkeeping()

    async def _change(self, script: Any, keys: list[str], args: list[str | int]) -> Any:
        """A cart change's script; with replication, confirmed by a replica (or raises
        NotConfirmed, once the change is made)."""
        if self.confirm is None:
            return await script(keys=keys, args=args)
        return await self.confirm.run(self.nodes, script, keys, args)

    def _args(self, sku: str, *extra: str | int) -> list[str | int]:
        return [redis_keys.changes_channel(sku), sku, *extra]

    def _known(self, sku: str) -> str:
        if sku not in self.catalog:
            raise UnknownSku(sku)
        return sku

    async def seed(self) -> int:
        """Create every catalog SKU missing from Redis; returns how many were created."""
        created = await per_book(self.nodes, self.catalog.skus, lambda pipe, sku: self._seed(
            keys=redis_keys.sku_keys(sku), client=pipe,
            args=self._args(sku, self._catalog_stock(sku), secrets.token_hex(8))))
        return sum(int(n) for n in created)

    async def _read_rows(self, skus: Sequence[str]) -> list[Any]:
        """The READ script's row of every SKU, in one round trip per CHUNK books."""
        return await per_book(self.nodes, skus, lambda pipe, sku: self._read(
            keys=redis_keys.sku_keys(sku), args=[], client=pipe))

    async def snapshots(self, skus: Sequence[str]) -> list[Snapshot]:
        """Current snapshots, read atomically per SKU."""
        rows = await self._read_rows([self._known(sku) for sku in skus])
        result = []
        for sku, row in zip(skus, rows):
            if not row:
                raise UnknownSku(sku)
            result.append(Snapshot(sku, int(row[0]), int(row[1]), as_text(row[2]), int(row[5])))
        return result

    async def snapshot(self, sku: str) -> Snapshot:
        return (await self.snapshots([sku]))[0]

    async def stock_report(self) -> list[dict[str, Any]]:
        """Stock, holds and count of every book (for `stock show` and the admin page)."""
        rows = await self._read_rows(self.catalog.skus)
        return [{"sku": sku, "stock": int(r[3]), "holds": int(r[4]), "count": int(r[0]),
                 "version": int(r[1]), "epoch": as_text(r[2])} if r else
                {"sku": sku, "stock": None, "holds": None, "count": None, "version": None,
                 "epoch": None}
                for sku, r in zip(self.catalog.skus, rows)]

    async def in_cart(self, sku: str, session_id: str) -> bool:
        key = redis_keys.holds_key(self._known(sku))
        score = await self.nodes.on_node_of(key, lambda client: client.zscore(key, session_id))
        return score is not None

    async def holds_of(self, session_id: str) -> list[Hold]:
        """Every copy the session holds now (one ZSCORE per book, pipelined)."""
        now_ms = self.clock.now_ms()
        skus = self.catalog.skus
        scores = await per_book(self.nodes, skus, lambda pipe, sku: pipe.zscore(
            redis_keys.holds_key(sku), session_id))
        return [Hold(sku, int(score)) for sku, score in zip(skus, scores)
                if score is not None and score > now_ms]

    def _result(self, sku: str, row: list[Any]) -> CartResult:
        status = as_text(row[0])
        if status == "unknown":
            raise UnknownSku(sku)
        snapshot = Snapshot(sku, int(row[1]), int(row[2]), as_text(row[3]), int(row[5]))
        self.clock.observe(int(row[6]))
        if status == "sold_out":
            raise SoldOut(snapshot)
        return CartResult(snapshot, bool(int(row[4])), int(row[6]), int(row[7]))

    async def add(self, sku: str, session_id: str, address: str = "") -> CartResult:
        """Hold one copy for the session (idempotent), counted against the client's
        address. Raises SoldOut, UnknownSku, TooManyHolds (nothing changed then)."""
        keys = redis_keys.sku_keys(self._known(sku))
        limit = self.address_holds if address else None
        reservation = await limit.reserve(address, sku, session_id) if limit else None
        try:
            row = await self._change(self._add, keys, self._args(
                sku, session_id, self.hold_ttl_ms, self.hold_max_ms, address))
            result = self._result(sku, row)
        except NotConfirmed:
            raise  # the hold exists on the primary: its reservation stays (a retry settles it)
        except BaseException:
            if limit and reservation:  # the book refused (or the call failed): give it back
                await limit.release(reservation)
            raise
        # The sweeper's index (see redis_keys), only once the hold exists: a refused add
        # changes nothing. It may only move earlier (LT).
        steps = [(self.sweeper.index(sku, result.expires_at_ms),
                  "indexing the hold's expiry (the sweeper's slices find it)")]
        if limit and reservation:
            steps.append((limit.settle(reservation, as_text(row[8]), result.expires_at_ms),
                          "settling the address's count (its reservation keeps the place "
                          "until the hold time)"))
        await self.bookkeeping.after_change(*steps)
        return result

    async def remove(self, sku: str, session_id: str) -> CartResult:
        """Release the session's copy, if it holds one (idempotent)."""
        row = await self._change(self._remove, redis_keys.sku_keys(self._known(sku)),
                                 self._args(sku, session_id))
        result = self._result(sku, row)
        if self.address_holds is not None:
            await self.bookkeeping.after_change(
                (self.address_holds.released(as_text(row[8]), sku, session_id),
                 "releasing the address's count (its entry expires with the hold time)"))
        return result

    async def set_stock(self, sku: str, stock: int) -> Snapshot:
        """Set a book's total stock and notify every client. Raises StockBelowHolds."""
        if stock < 0:
            raise ValueError("stock cannot be negative")
        row = await self._set_stock(keys=redis_keys.sku_keys(self._known(sku)),
                                    args=self._args(sku, stock))
        if as_text(row[0]) == "below_holds":
            raise StockBelowHolds(f"{sku}: {int(row[1])} copies are held in carts now; "
                                  f"stock cannot go below that")
        return self._result(sku, row).snapshot

    async def books_in_redis(self) -> list[str]:
        """Every SKU Redis has stock for: this catalog's, and those of any other catalog
        the shop ran with (SCAN, so Redis is never blocked)."""
        pattern = redis_keys.stock_key("*")
        skus = {redis_keys.sku_of_stock_key(as_text(key))
                async for key in self.redis.scan_iter(match=pattern, count=1000)}
        return sorted(skus)

    async def reset(self, stock: int | None = None) -> tuple[int, int]:
        """Release every hold of every book Redis has and set its stock (`stock` for
        every book, else this catalog's, else unchanged); every client is told, as with
        any change. Returns (books, holds released)."""
        if stock is not None and stock < 0:
            raise ValueError("stock cannot be negative")
        rows = await per_book(
            self.nodes, await self.books_in_redis(), lambda pipe, sku: self._reset(
                keys=redis_keys.sku_keys(sku), client=pipe,
                args=self._args(sku, stock if stock is not None else self._catalog_stock(sku))))
        done = [row for row in rows if as_text(row[0]) == "ok"]
        books, released = len(done), sum(int(row[8]) for row in done)
        await self.redis.delete(*redis_keys.HOLD_EXPIRIES_KEYS)
        await address_holds.forget_all(self.redis)  # whatever the cap of this process
        return books, released

    def _catalog_stock(self, sku: str) -> int:
        """The catalog's stock of the book; -1 (keep what Redis has) for another's book."""
        book = self.catalog.get(sku)
        return book.stock if book is not None else -1

    async def sweep(self) -> int:
        """Drop expired holds (service/inventory/sweeper.py); returns how many expired."""
        return await self.sweeper.sweep()

    async def sweep_all(self) -> int:
        """Sweep every book of the catalog now (tests and tools)."""
        return await self.sweeper.sweep_all()
