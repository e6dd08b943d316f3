"""At most BB_MAX_HOLDS_PER_ADDRESS copies held at once per client address.

One atomic count per address (a sorted set under the address's hash tag: redis_keys.
address_holds_key), so the cap is exact across every instance, however many adds race.
A book's keys have the book's tag, and on a Redis Cluster the two live on different
nodes, so no single script can touch both. An add therefore takes three steps:

1. reserve: one script on the address's key drops its expired entries, refuses when the
   address already has the cap, else adds "<sku> <session>" with a provisional expiry;
2. the book's ADD script holds the copy (or refuses: sold out) and says whose address
   the hold counts against (a re-add from a new address still counts against the first);
3. settle: the entry takes the hold's real expiry; a refused add releases its reservation.

Each entry expires when its hold does (same score), so expiry and the sweeper keep the
count exact with no extra step; a remove releases the entry of the address its hold
counts against. If an instance dies between the steps, a reservation outlives nothing
but its own provisional expiry (the hold time): the count errs on the safe side, and
only until then.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import redis.asyncio as aioredis

from service import redis_keys
from service.redis_nodes import RedisNodes

# KEYS[1] the address's key; ARGV[1] "<sku> <session>", ARGV[2] the cap, ARGV[3] the
# provisional expiry (hold ttl, ms), ARGV[4] the key's own lifetime (ms).
# {"held" | "reserved" | "full", the earliest expiry of the address's holds}
RESERVE = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local earliest = tonumber(first[2] or '0')
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return {'held', earliest} end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return {'full', earliest} end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {'reserved', earliest}
"""

# KEYS[1] the address's key; ARGV[1] the entry, ARGV[2] the hold's expiry, ARGV[3] the
# key's lifetime. Only an entry that is still there (XX): a concurrent remove wins.
SETTLE = r"""
redis.call('ZADD', KEYS[1], 'XX', ARGV[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""


class TooManyHolds(Exception):
    """The address holds the most copies it may; `retry_at_ms` is when one expires."""

    def __init__(self, cap: int, retry_at_ms: int):
        super().__init__(f"the address already holds {cap} copies")
        self.cap = cap
        self.retry_at_ms = retry_at_ms


@dataclasses.dataclass(frozen=True)
class Reservation:
    address: str
    entry: str
    new: bool  # False: the address already counted this hold (a re-add)


class AddressHolds:
    """The per-address count of holds (see the module's docstring)."""

    def __init__(self, nodes: RedisNodes, cap: int, hold_ttl_ms: int, hold_max_ms: int):
        # each step on the node that owns the address's key (RedisNodes.on_node_of)
        self.nodes = nodes
        self.cap = cap
        self.hold_ttl_ms = hold_ttl_ms
        # no hold outlives this, so neither need the key that counts it
        self.key_lifetime_ms = hold_max_ms + 60_000
        self._reserve = nodes.router.register_script(RESERVE)
        self._settle = nodes.router.register_script(SETTLE)

    @staticmethod
    def entry(sku: str, session_id: str) -> str:
        return f"{sku} {session_id}"

    async def reserve(self, address: str, sku: str, session_id: str) -> Reservation:
        """A place for one more hold of `address`; raises TooManyHolds."""
        entry = self.entry(sku, session_id)
        key = redis_keys.address_holds_key(address)
        row: Any = await self.nodes.on_node_of(key, lambda client: self._reserve(
            keys=[key], args=[entry, self.cap, self.hold_ttl_ms, self.key_lifetime_ms],
            client=client))
        status = row[0].decode() if isinstance(row[0], bytes) else str(row[0])
        if status == "full":
            raise TooManyHolds(self.cap, int(row[1]))
        return Reservation(address, entry, new=status == "reserved")

    async def settle(self, reservation: Reservation, holder: str, expires_at_ms: int) -> None:
        """The book holds the copy until expires_at_ms, counted against `holder`."""
        if holder != reservation.address:
            await self.release(reservation)
        if holder:  # a hold made before addresses were counted counts against none
            key = redis_keys.address_holds_key(holder)
            await self.nodes.on_node_of(key, lambda client: self._settle(
                keys=[key], args=[reservation.entry, expires_at_ms, self.key_lifetime_ms],
                client=client))

    async def release(self, reservation: Reservation) -> None:
        """Give back a reservation the book refused (only one this add made)."""
        if reservation.new:
            await self._forget(reservation.address, reservation.entry)

    async def released(self, holder: str, sku: str, session_id: str) -> None:
        """The hold was removed: its address may hold another."""
        if holder:
            await self._forget(holder, self.entry(sku, session_id))

    async def _forget(self, address: str, entry: str) -> None:
        key = redis_keys.address_holds_key(address)
        await self.nodes.on_node_of(key, lambda client: client.zrem(key, entry))



async def forget_all(redis: aioredis.Redis) -> int:
    """Delete every address's count (`stock reset` released every hold)."""
    keys = [key async for key in redis.scan_iter(match=redis_keys.ADDRESS_HOLDS_PATTERN,
                                                 count=1000)]
    for start in range(0, len(keys), 500):
        await redis.delete(*keys[start:start + 500])
    return len(keys)
