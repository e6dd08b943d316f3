"""Every Redis key, channel and fixed limit in one place (units in the names).

The keys of one SKU share a hash tag (`{sku}`) so that a later Redis Cluster can run
each Lua script, which touches only one SKU, on a single node.
"""

KEY_PREFIX = "bb"

# One channel for every SKU: a process subscribes once and serves all books.
INVENTORY_CHANNEL = f"{KEY_PREFIX}:inventory"


def stock_key(sku: str) -> str:
    """Total copies of the book (int)."""
    return f"{KEY_PREFIX}:{{{sku}}}:stock"


def holds_key(sku: str) -> str:
    """Sorted set: session id -> hold expiry in Redis-clock milliseconds."""
    return f"{KEY_PREFIX}:{{{sku}}}:holds"


def version_key(sku: str) -> str:
    """Bumped by every change of the SKU's count."""
    return f"{KEY_PREFIX}:{{{sku}}}:ver"


def epoch_key(sku: str) -> str:
    """Random id set when the SKU is (re)initialised; a new epoch resets versions."""
    return f"{KEY_PREFIX}:{{{sku}}}:epoch"


def sku_keys(sku: str) -> list[str]:
    """The four keys every inventory script takes, in the scripts' KEYS order."""
    return [stock_key(sku), holds_key(sku), version_key(sku), epoch_key(sku)]


# Bounds on what one request may ask for.
MAX_SKUS_PER_REQUEST = 50
MAX_BODY_BYTES = 8 * 1024
MAX_WS_MESSAGE_BYTES = 1024
SESSION_MAX_AGE_DAYS = 30
