"""Expired holds back to stock: every instance sweeps (idempotently) every half second.

The SWEEP script drops a book's expired holds and publishes its new count. Which books
to visit: those an index says have holds due (sorted sets of SKU -> earliest expiry,
in partitions: redis_keys.hold_expiries_key_of), and a round-robin slice of the catalog
as the safety net under the index (an entry lost when an instance died between a hold
and its index write). Index partitions are read and written through the node that owns
each (per_key), never through the cluster client: a failing shard must not stall the
others' sweeps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from service import redis_keys
from service.inventory.catalog import Catalog
from service.inventory.clock import RedisClock
from service.inventory.per_book import chunks, per_book, per_key
from service.inventory.snapshot import as_text
from service.redis_nodes import RedisNodes

# the fast path visits at most this many books with holds due per round, per partition
SWEEP_BATCH = 500
# books also visited each round, round robin over the catalog (the safety net under the
# index): at 0.5 s a round, a 2,000-book catalog comes round every 20 s
SLICE_BOOKS = 50


class HoldSweeper:
    def __init__(self, nodes: RedisNodes, catalog: Catalog, clock: RedisClock, script: Any):
        self.nodes = nodes
        self.catalog = catalog
        self.clock = clock
        self._sweep = script
        self._slice_start = 0  # where the next slice of the catalog begins

    async def index(self, sku: str, expires_at_ms: int) -> None:
        """A hold of the book expires then: its entry may only move earlier (LT)."""
        key = redis_keys.hold_expiries_key_of(sku)
        await self.nodes.on_node_of(key, lambda client: client.zadd(
            key, {sku: expires_at_ms}, lt=True))

    async def sweep(self) -> int:
        """Drop the expired holds of the books whose holds are due (the index), and of
        the next slice of the catalog; publish their new counts. Returns how many holds
        expired."""
        now_ms = self.clock.now_ms()
        partitions = await per_key(
            self.nodes, redis_keys.HOLD_EXPIRIES_KEYS, lambda key: key,
            lambda pipe, key: pipe.zrangebyscore(key, "-inf", now_ms, start=0, num=SWEEP_BATCH))
        due = [as_text(sku) for partition in partitions for sku in partition]
        # every book due, this catalog's or not: the script works on any book Redis has
        expired = await self._sweep_books(due, exact=True)
        return expired + await self.sweep_next_slice()

    async def sweep_next_slice(self, books: int = SLICE_BOOKS) -> int:
        """Sweep the next `books` of the catalog, round robin: the safety net under the
        index (a hold whose index entry was lost, by an instance that died between the
        two, expires within one round of the catalog). A slice per sweep keeps the cost
        even: a whole catalog at once would stall the instance and Redis for a moment."""
        skus = self.catalog.skus
        start = self._slice_start % len(skus)
        group = skus[start:start + books]
        self._slice_start = start + len(group)
        return await self._sweep_books(group, exact=False)

    async def sweep_all(self) -> int:
        """Sweep every book of the catalog now (tests and tools)."""
        return sum([await self._sweep_books(group, exact=False)
                    for group in chunks(self.catalog.skus)])

    async def _sweep_books(self, skus: Sequence[str], exact: bool) -> int:
        if not skus:
            return 0
        rows = await self._sweep_scripts(skus)
        # exact: the books were due, their entries are replaced (or removed when no hold
        # is left); otherwise an entry may only move earlier (a concurrent add knows better)
        updates = {sku: next_expiry for sku, (_, next_expiry, _) in zip(skus, rows)
                   if next_expiry or exact}
        await self._write_index(updates, earlier_only=not exact)
        emptied = [sku for sku, next_expiry in updates.items() if not next_expiry]
        if emptied:
            # An add between our sweep and the ZREM would be unindexed now. Looking again
            # after the ZREM closes that: a hold added before this look is seen here, and
            # one added after it is indexed by its own add (ZADD LT on a missing entry).
            again = zip(emptied, await self._sweep_scripts(emptied))
            await self._write_index({sku: row[1] for sku, row in again if row[1]},
                                    earlier_only=True)
        return sum(int(expired) for expired, _, _ in rows)

    async def _write_index(self, updates: dict[str, Any], earlier_only: bool) -> None:
        """Each book's entry set to its next expiry, or removed where that is nothing."""
        def write(pipe: Any, sku: str) -> Any:
            key = redis_keys.hold_expiries_key_of(sku)
            if updates[sku]:
                return pipe.zadd(key, {sku: int(updates[sku])}, lt=earlier_only)
            return pipe.zrem(key, sku)

        await per_key(self.nodes, list(updates), redis_keys.hold_expiries_key_of, write)

    async def _sweep_scripts(self, skus: Sequence[str]) -> list[Any]:
        """The SWEEP script's {expired, next expiry, Redis time} of every book; learns
        Redis's time."""
        rows = await per_book(self.nodes, skus, lambda pipe, sku: self._sweep(
            keys=redis_keys.sku_keys(sku), args=[redis_keys.changes_channel(sku), sku],
            client=pipe))
        if rows:
            self.clock.observe(max(int(row[2]) for row in rows))
        return rows
