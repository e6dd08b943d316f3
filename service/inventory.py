"""Inventory in Redis: snapshots, and one atomic Lua script per kind of change.

Every script that changes a count also bumps the SKU's version and PUBLISHes the new
snapshot in the same atomic step, so "count changed" and "notification sent" can never
disagree. Time comes from the Redis clock (TIME), so instances with skewed clocks agree
on when a hold expires.
"""

from __future__ import annotations

import dataclasses
import json
import secrets

import redis.asyncio as aioredis

from service import keys
from service.catalog import Catalog


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """The count of one SKU at one version of one epoch."""
    sku: str
    count: int
    version: int
    epoch: str

    def is_newer_than(self, other: "Snapshot | None") -> bool:
        """A new epoch (Redis re-initialised) always wins; otherwise the higher version."""
        return other is None or self.epoch != other.epoch or self.version > other.version

    def as_dict(self) -> dict:
        return {"sku": self.sku, "inventoryCount": self.count,
                "version": self.version, "epoch": self.epoch}

    @classmethod
    def from_message(cls, data: bytes | str) -> "Snapshot":
        """Parse a snapshot published by the scripts. Raises ValueError."""
        try:
            obj = json.loads(data)
            return cls(sku=str(obj["sku"]), count=int(obj["inventoryCount"]),
                       version=int(obj["version"]), epoch=str(obj["epoch"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed snapshot message: {exc}") from None


class UnknownSku(LookupError):
    """The SKU is not in the catalog (or not initialised in Redis yet)."""


class SoldOut(Exception):
    """No copy left to hold."""

    def __init__(self, snapshot: Snapshot):
        super().__init__(f"{snapshot.sku} is sold out")
        self.snapshot = snapshot


class StockBelowHolds(ValueError):
    """Setting stock below the copies held now would make the count negative."""


@dataclasses.dataclass(frozen=True, slots=True)
class CartResult:
    snapshot: Snapshot
    in_cart: bool


# KEYS: 1 stock, 2 holds, 3 version, 4 epoch (keys.sku_keys). ARGV[1] channel, ARGV[2] sku.
_PRELUDE = r"""
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function current_count(stock)
  return tonumber(stock) - redis.call('ZCARD', KEYS[2])
end
-- bumps the version and publishes the snapshot; returns the new version
local function changed(count)
  local ver = redis.call('INCR', KEYS[3])
  local epoch = redis.call('GET', KEYS[4])
  redis.call('PUBLISH', ARGV[1], string.format(
    '{"sku":"%s","inventoryCount":%d,"version":%d,"epoch":"%s"}', ARGV[2], count, ver, epoch))
  return ver
end
local function reply(status, count, in_cart)
  return {status, count, tonumber(redis.call('GET', KEYS[3]) or '0'),
          redis.call('GET', KEYS[4]), in_cart}
end
"""

# ARGV[3] session id, ARGV[4] hold ttl ms
_ADD = _PRELUDE + r"""
local stock = redis.call('GET', KEYS[1])
if not stock then return {'unknown'} end
local now = now_ms()
local expired = redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local count = current_count(stock)
if redis.call('ZSCORE', KEYS[2], ARGV[3]) then
  -- a repeated add only extends the hold
  redis.call('ZADD', KEYS[2], 'XX', now + tonumber(ARGV[4]), ARGV[3])
  if expired > 0 then changed(count) end
  return reply('ok', count, 1)
end
if count <= 0 then
  if expired > 0 then changed(count) end
  return reply('sold_out', count, 0)
end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[3])
changed(count - 1)
return reply('ok', count - 1, 1)
"""

# ARGV[3] session id
_REMOVE = _PRELUDE + r"""
local stock = redis.call('GET', KEYS[1])
if not stock then return {'unknown'} end
local expired = redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms())
local removed = redis.call('ZREM', KEYS[2], ARGV[3])
local count = current_count(stock)
if removed + expired > 0 then changed(count) end
return reply('ok', count, 0)
"""

# ARGV[3] new total stock
_SET_STOCK = _PRELUDE + r"""
if not redis.call('GET', KEYS[1]) then return {'unknown'} end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms())
local held = redis.call('ZCARD', KEYS[2])
local stock = tonumber(ARGV[3])
if stock < held then return {'below_holds', held} end
redis.call('SET', KEYS[1], stock)
changed(stock - held)
return reply('ok', stock - held, 0)
"""

# Idempotent: every instance runs it; only the first to see an expired hold publishes.
_SWEEP = _PRELUDE + r"""
local stock = redis.call('GET', KEYS[1])
if not stock then return 0 end
local expired = redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms())
if expired > 0 then changed(current_count(stock)) end
return expired
"""

# ARGV[3] initial stock, ARGV[4] a fresh epoch id. Never overwrites an existing SKU.
_SEED = _PRELUDE + r"""
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[3])
redis.call('DEL', KEYS[2])
redis.call('SET', KEYS[3], 0)
redis.call('SET', KEYS[4], ARGV[4])
changed(tonumber(ARGV[3]))
return 1
"""

_READ = r"""
local stock = redis.call('GET', KEYS[1])
if not stock then return {} end
return {tonumber(stock) - redis.call('ZCARD', KEYS[2]),
        tonumber(redis.call('GET', KEYS[3]) or '0'), redis.call('GET', KEYS[4]) or '',
        tonumber(stock), redis.call('ZCARD', KEYS[2])}
"""


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class InventoryStore:
    """The inventory operations; Redis holds all state, this object holds none."""

    def __init__(self, redis: aioredis.Redis, catalog: Catalog, hold_ttl_s: float):
        self.redis = redis
        self.catalog = catalog
        self.hold_ttl_ms = int(hold_ttl_s * 1000)
        self._add = redis.register_script(_ADD)
        self._remove = redis.register_script(_REMOVE)
        self._set_stock = redis.register_script(_SET_STOCK)
        self._sweep = redis.register_script(_SWEEP)
        self._seed = redis.register_script(_SEED)
        self._read = redis.register_script(_READ)

    def _args(self, sku: str, *extra) -> list:
        return [keys.INVENTORY_CHANNEL, sku, *extra]

    def _known(self, sku: str) -> str:
        if sku not in self.catalog:
            raise UnknownSku(sku)
        return sku

    async def seed(self) -> int:
        """Create every catalog SKU missing from Redis; returns how many were created."""
        created = 0
        for book in self.catalog.books:
            created += await self._seed(keys=keys.sku_keys(book.sku),
                                        args=self._args(book.sku, book.stock, secrets.token_hex(8)))
        return created

    async def snapshots(self, skus: list[str]) -> list[Snapshot]:
        """Current snapshots, read atomically per SKU in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for sku in skus:
                await self._read(keys=keys.sku_keys(self._known(sku)), args=[], client=pipe)
            rows = await pipe.execute()
        result = []
        for sku, row in zip(skus, rows):
            if not row:
                raise UnknownSku(sku)
            result.append(Snapshot(sku, int(row[0]), int(row[1]), _text(row[2])))
        return result

    async def snapshot(self, sku: str) -> Snapshot:
        return (await self.snapshots([sku]))[0]

    async def stock_report(self) -> list[dict]:
        """Stock, holds and count of every book (for `stock show`)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for sku in self.catalog.skus:
                await self._read(keys=keys.sku_keys(sku), args=[], client=pipe)
            rows = await pipe.execute()
        return [{"sku": sku, "stock": int(r[3]), "holds": int(r[4]), "count": int(r[0]),
                 "version": int(r[1]), "epoch": _text(r[2])} if r else
                {"sku": sku, "stock": None, "holds": None, "count": None, "version": None,
                 "epoch": None}
                for sku, r in zip(self.catalog.skus, rows)]

    async def in_cart(self, sku: str, session_id: str) -> bool:
        return await self.redis.zscore(keys.holds_key(self._known(sku)), session_id) is not None

    def _result(self, sku: str, row) -> CartResult:
        status = _text(row[0])
        if status == "unknown":
            raise UnknownSku(sku)
        snapshot = Snapshot(sku, int(row[1]), int(row[2]), _text(row[3]))
        if status == "sold_out":
            raise SoldOut(snapshot)
        return CartResult(snapshot, bool(int(row[4])))

    async def add(self, sku: str, session_id: str) -> CartResult:
        """Hold one copy for the session (idempotent). Raises SoldOut, UnknownSku."""
        row = await self._add(keys=keys.sku_keys(self._known(sku)),
                              args=self._args(sku, session_id, self.hold_ttl_ms))
        return self._result(sku, row)

    async def remove(self, sku: str, session_id: str) -> CartResult:
        """Release the session's copy, if it holds one (idempotent)."""
        row = await self._remove(keys=keys.sku_keys(self._known(sku)),
                                 args=self._args(sku, session_id))
        return self._result(sku, row)

    async def set_stock(self, sku: str, stock: int) -> Snapshot:
        """Set a book's total stock and notify every client. Raises StockBelowHolds."""
        if stock < 0:
            raise ValueError("stock cannot be negative")
        row = await self._set_stock(keys=keys.sku_keys(self._known(sku)),
                                    args=self._args(sku, stock))
        if _text(row[0]) == "below_holds":
            raise StockBelowHolds(f"{sku}: {int(row[1])} copies are held in carts now; "
                                  f"stock cannot go below that")
        return self._result(sku, row).snapshot

    async def sweep(self) -> int:
        """Drop expired holds of every book and publish the changed counts."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for sku in self.catalog.skus:
                await self._sweep(keys=keys.sku_keys(sku), args=self._args(sku), client=pipe)
            return sum(int(n) for n in await pipe.execute())
