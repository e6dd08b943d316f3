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

from redis.exceptions import AskError, MovedError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service import redis_keys
from service.inventory.per_book import per_book
from service.inventory.scripts import PRELUDE
from service.redis_nodes import RedisNodes

# a change redirected more often than this (a slot moving back and forth) answers 503
MAX_REDIRECTS = 2


class NotConfirmed(Exception):
    """The change was made on the primary but no replica confirmed it in time."""


class ReplicaConfirm:
    """Run a change's script and WAIT for `replicas` in one round trip, on the connection
    of the node that owns the book (WAIT confirms its own connection's writes)."""

    def __init__(self, replicas: int, timeout_s: float):
        self.replicas = replicas
        self.timeout_ms = max(1, int(timeout_s * 1000))

    async def run(self, nodes: RedisNodes, script: Any, keys: Sequence[str],
                  args: Sequence[str | int]) -> Any:
        """The script's reply; raises NotConfirmed (after the change) if no replica has it.

        On a Redis Cluster, a MOVED answer (the slot has a new owner) or ASK (its keys are
        moving there now) ran nothing: the change is sent to the node named, once or
        twice. TRYAGAIN and CLUSTERDOWN are raised (503 with Retry-After)."""
        node, asking = nodes.name_of(keys[0]), False
        for redirects in range(MAX_REDIRECTS + 1):
            try:
                async with nodes.client(node).pipeline(transaction=False) as pipe:
                    if asking:  # the importing node takes the next command of this slot
                        pipe.execute_command("ASKING")
                    await script(keys=keys, args=args, client=pipe)
                    pipe.wait(self.replicas, self.timeout_ms)
                    *_, row, confirmed = await pipe.execute()
                break
            except AskError as exc:  # MovedError too: it is a kind of AskError
                if redirects == MAX_REDIRECTS:
                    raise
                node = f"{exc.host}:{exc.port}"
                asking = not isinstance(exc, MovedError)
                if not asking:
                    await nodes.refresh()  # the map is out of date: read it for the next ones
            except (RedisConnectionError, RedisTimeoutError):
                await nodes.refresh()  # the node may be gone: the next change asks again
                raise
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
    """Gives every book a new epoch once per primary (see the module's reasoning); on a
    Redis Cluster each book's primary is its shard's."""

    def __init__(self, nodes: RedisNodes):
        self.nodes = nodes
        self._promoted = nodes.router.register_script(PROMOTED)
        self.renewed_for: dict[str, str] = {}  # node -> its replication ID at renew_epochs

    async def primary_ids(self, nodes: Sequence[str] = ()) -> dict[str, str]:
        """The replication ID of every primary (and of `nodes`), by node."""
        ids = {}
        for node in sorted({*self.nodes.primaries(), *nodes}):
            info = await self.nodes.client(node).info("replication")
            ids[node] = str(info["master_replid"])
        return ids

    async def renew_epochs(self, skus: Sequence[str]) -> int:
        """Run PROMOTED on every book; returns how many got a new epoch from this call."""
        owners = {sku: self.nodes.name_of(redis_keys.stock_key(sku)) for sku in skus}
        ids = await self.primary_ids(list(owners.values()))
        self.renewed_for = ids

        def promoted(pipe: Any, sku: str) -> Any:
            # A book whose slot moves meanwhile is run on its new node with the old one's
            # ID: it gets a new epoch now and another at the next renewal (harmless).
            return self._promoted(keys=[*redis_keys.sku_keys(sku), redis_keys.replid_key(sku)],
                                  args=[redis_keys.changes_channel(sku), sku, ids[owners[sku]]],
                                  client=pipe)

        renewed = await per_book(self.nodes, skus, promoted)
        return sum(int(n) for n in renewed)
