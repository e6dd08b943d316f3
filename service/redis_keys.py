"""Every Redis key and channel name, and the TTLs of keys that expire (units in the names).

Limits on requests live in `service.web.limits`; timings of the search cache in
`service.search.cache`. The keys of one SKU share a hash tag (`{sku}`) so that a Redis
Cluster can run each Lua script, which touches only one SKU, on a single node.
"""

import zlib

KEY_PREFIX = "bb"



def stock_key(sku: str) -> str:
    """Total copies of the book (int)."""
    return f"{KEY_PREFIX}:{{{sku}}}:stock"


def sku_of_stock_key(key: str) -> str:
    """The SKU in a stock_key() name (what SCAN MATCH stock_key("*") finds)."""
    return key[len(f"{KEY_PREFIX}:{{"):-len("}:stock")]


def holds_key(sku: str) -> str:
    """Sorted set: session id -> hold expiry in Redis-clock milliseconds."""
    return f"{KEY_PREFIX}:{{{sku}}}:holds"


def version_key(sku: str) -> str:
    """Bumped by every change of the SKU's count."""
    return f"{KEY_PREFIX}:{{{sku}}}:ver"


def epoch_key(sku: str) -> str:
    """Random id set when the SKU is (re)initialised; a new epoch resets versions."""
    return f"{KEY_PREFIX}:{{{sku}}}:epoch"


def changed_at_key(sku: str) -> str:
    """Redis-clock ms of the SKU's latest change (set with the version)."""
    return f"{KEY_PREFIX}:{{{sku}}}:at"


def holders_key(sku: str) -> str:
    """Hash: session id -> "<first add ms> <client address>" of its hold (see ADD)."""
    return f"{KEY_PREFIX}:{{{sku}}}:holders"


def replid_key(sku: str) -> str:
    """The replication ID of the primary the SKU's epoch was made on (Sentinel mode:
    service/inventory/replication.py)."""
    return f"{KEY_PREFIX}:{{{sku}}}:replid"


def changes_channel(sku: str) -> str:
    """The book's change channel, a shard channel (SPUBLISH / SSUBSCRIBE) under the book's
    hash tag: on a Redis Cluster the script that changes the book publishes on the node
    that owns the book, and only that node's subscribers receive it; a process subscribes
    to every book's channel over one connection per node (service/live/feed.py)."""
    return f"{KEY_PREFIX}:{{{sku}}}:changes"


def sku_keys(sku: str) -> list[str]:
    """The keys every inventory script takes, in the scripts' KEYS order."""
    return [stock_key(sku), holds_key(sku), version_key(sku), epoch_key(sku),
            changed_at_key(sku), holders_key(sku)]


# Sorted set per client address: "<sku> <session id>" -> that hold's expiry (ms). Counts
# the copies an address holds, for BB_MAX_HOLDS_PER_ADDRESS. It has the address's hash
# tag, not a book's: on a Redis Cluster it lives on another node than the book, so an add
# first reserves a place here (its own atomic script), then runs the book's script, then
# settles the reservation (or releases it if the book refused). See address_holds.py.
def address_holds_key(address: str) -> str:
    return f"{KEY_PREFIX}:addr:{{{address}}}:holds"


ADDRESS_HOLDS_PATTERN = f"{KEY_PREFIX}:addr:*"


# Sorted sets: SKU -> the earliest expiry (ms) of its holds, or earlier. Let the sweeper
# visit only the books with holds due; kept beside the scripts (not inside them, as they
# have no hash tag of the book's), so the sweeper's round-robin pass over the catalog
# repairs what it may miss. Split into partitions, each under a tag of its own, so that on
# a Redis Cluster every add's index write does not land on one shard: they spread over
# the shards as the books do.
HOLD_EXPIRY_PARTITIONS = 16


def hold_expiries_key(partition: int) -> str:
    return f"{KEY_PREFIX}:hold-expiries:{{{partition}}}"


def hold_expiries_key_of(sku: str) -> str:
    """The index partition a book's entry lives in (stable across processes)."""
    return hold_expiries_key(zlib.crc32(sku.encode()) % HOLD_EXPIRY_PARTITIONS)


HOLD_EXPIRIES_KEYS = [hold_expiries_key(n) for n in range(HOLD_EXPIRY_PARTITIONS)]


# Search cache (tweets per second). One value per normalised query (by its sha256),
# shared by every instance; the lock makes a cold query cost one upstream request
# cluster-wide. The three keys of a query share a hash tag, like a SKU's, so the
# multi-key reads and the write-and-unlock transaction stay on one Redis Cluster node.
SEARCH_PREFIX = f"{KEY_PREFIX}:search"


def search_key(query_hash: str) -> str:
    """JSON of the last good upstream result for the query (TTL: fresh + stale window)."""
    return f"{SEARCH_PREFIX}:{{{query_hash}}}"


def search_lock_key(query_hash: str) -> str:
    """Single-flight lock: a random token, SET NX PX, released by compare-and-delete."""
    return f"{SEARCH_PREFIX}:{{{query_hash}}}:lock"


def search_error_key(query_hash: str) -> str:
    """The last upstream failure for the query, kept briefly so a dead upstream is not hammered."""
    return f"{SEARCH_PREFIX}:{{{query_hash}}}:error"


SEARCH_ERROR_TTL_S = 5.0


# Instance heartbeats: one key per instance, refreshed while it runs and gone soon after
# it stops; and a sorted set (id -> last beat, ms) so the admin page can list the gone.
# They share one hash tag, so the admin page reads them all with one MGET on a Redis
# Cluster too.
HEARTBEAT_TTL_S = 10
INSTANCES_KEY = f"{KEY_PREFIX}:{{instances}}"
# a gone instance is listed this long, then forgotten
GONE_INSTANCE_MEMORY_S = 3600


def heartbeat_key(instance_id: str) -> str:
    """JSON of the instance's figures, with a TTL of HEARTBEAT_TTL_S."""
    return f"{INSTANCES_KEY}:{instance_id}"


def admin_sign_in_failures_key(address: str) -> str:
    """Wrong admin tokens from one address in the current minute (expires by itself)."""
    return f"{KEY_PREFIX}:admin-fail:{{{address}}}"
