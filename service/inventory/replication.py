"""What a cart change's 200 means when Redis is replicated (Sentinel mode), and how
clients get past a write that a failover lost.

**Acknowledged means replicated.** Redis replicates asynchronously: a primary that dies
can take its last writes with it, and Sentinel then promotes a replica that never had
them. So a cart change is sent as its script and `WAIT 1 <timeout>` in one pipeline (one
round trip; WAIT is not allowed inside a script): the answer is 200 only when a replica
confirmed it, and otherwise 503 `not_confirmed`, the one answer whose change may or may
not survive. Adds and removes are idempotent, so the client's retry is safe. (The
address count's settle step and the sweeper's index are written after the WAIT: losing
them in a failover only makes the count err on the safe side until the hold's expiry.)
The primary also runs with `min-replicas-to-write 1`, so one cut off from every replica
(the old primary of a split) refuses writes instead of taking ones that will be lost.

**No client keeps a count the new primary does not have.** The scripts publish before
WAIT can confirm anything, so a client can have been shown version v+1 of a book that
the promoted replica never received; the new primary then makes its own, different v+1,
which that client (and `since` cursors) would take for the one it has. The way out is
the book's epoch: a snapshot of another epoch always replaces what a client has. Each
book keeps, beside its epoch, the replication ID of the primary that epoch was made on
(`bb:{sku}:replid`). A promoted replica starts a new replication ID, so after every
(re)subscribe each instance reads its primary's ID and runs PROMOTED on every book: the
first instance to get there gives each book a new epoch, taken from the new ID (random,
so never an epoch seen before, and the same on every instance, so a race between them
changes nothing twice), and publishes the snapshot; everyone else finds the ID already
recorded and does nothing. Every client then takes the promoted node's state. A change
made on the new primary before that runs still carries the old epoch and may be ignored
by a client that saw the lost version, but only until the first instance resubscribes,
which the failover itself forces (its subscription was on the old primary). A restart of
the primary also starts a new ID: the books then get a new epoch they did not need,
which costs one snapshot each.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from service import redis_keys
from service.inventory.per_book import per_book
from service.inventory.scripts import PRELUDE


class NotConfirmed(Exception):
    """The change was made on the primary but no replica confirmed it in time."""


class ReplicaConfirm:
    """Run a change's script and WAIT for `replicas` in one round trip."""

    def __init__(self, replicas: int, timeout_s: float):
        self.replicas = replicas
        self.timeout_ms = max(1, int(timeout_s * 1000))

    async def run(self, redis: aioredis.Redis, script: Any, keys: Sequence[str],
                  args: Sequence[str | int]) -> Any:
        """The script's reply; raises NotConfirmed (after the change) if no replica has it."""
        async with redis.pipeline(transaction=False) as pipe:
            await script(keys=keys, args=args, client=pipe)
            pipe.wait(self.replicas, self.timeout_ms)
            row, confirmed = await pipe.execute()
        if int(confirmed) < self.replicas:
            raise NotConfirmed(f"{confirmed} of {self.replicas} replica(s) confirmed the "
                               f"change within {self.timeout_ms} ms")
        return row


# KEYS: the book's keys (redis_keys.sku_keys) and then its replid key; ARGV[1] channel,
# ARGV[2] sku, ARGV[3] the primary's replication ID. 1 when the book got a new epoch.
PROMOTED = PRELUDE + r"""
if redis.call('GET', KEYS[7]) == ARGV[3] then return 0 end
local stock = redis.call('GET', KEYS[1])
if not stock then return 0 end
redis.call('SET', KEYS[4], string.sub(ARGV[3], 1, 16))
redis.call('SET', KEYS[7], ARGV[3])
changed(current_count(stock))
return 1
"""


class Promotions:
    """Gives every book a new epoch once per primary (see the module's reasoning)."""

    def __init__(self, redis: aioredis.Redis):
        self.redis = redis
        self._promoted = redis.register_script(PROMOTED)
        self.renewed_for = ""  # the primary's ID at the last renew_epochs

    async def primary_id(self) -> str:
        info = await self.redis.info("replication")
        return str(info["master_replid"])

    async def renew_epochs(self, skus: Sequence[str]) -> int:
        """Run PROMOTED on every book; returns how many got a new epoch from this call."""
        replid = await self.primary_id()
        self.renewed_for = replid
        renewed = await per_book(self.redis, skus, lambda pipe, sku: self._promoted(
            keys=[*redis_keys.sku_keys(sku), redis_keys.replid_key(sku)],
            args=[redis_keys.changes_channel(sku), sku, replid], client=pipe))
        return sum(int(n) for n in renewed)
