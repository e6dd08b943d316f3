"""The error protocol: every refusal has a status, a stable code and a message for people.

JSON errors look like {"error": code, "message": text, ...extra}; pages get error.html.
"""

from __future__ import annotations

from typing import Any

import tornado.web
from redis.exceptions import RedisError


class ApiError(tornado.web.HTTPError):
    """An error with a stable machine-readable code and a message for people."""

    def __init__(self, status: int, code: str, message: str,
                 retry_after_s: int | None = None, **extra: Any):
        super().__init__(status, log_message=message)
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s  # sent as Retry-After (a 429 or 503)
        self.extra = extra


def unknown_sku(sku: str) -> ApiError:
    """404 for a SKU that is not in the catalog (quoted, cut short: it is user input)."""
    return ApiError(404, "unknown_sku", f"no book with SKU {sku[:60]!r}")


def redis_unavailable(error: RedisError) -> ApiError:
    """503 for a request Redis could not serve, saying which way it failed."""
    if redis_error_code(error) == "NOREPLICAS":
        # min-replicas-to-write: the primary has no replica in sync (as right after a
        # failover, until one has copied it), and refused the script's first write
        return ApiError(503, "unavailable", "no Redis replica is in sync to confirm changes "
                                            "(down, or catching up after a failover); nothing "
                                            "changed; retry shortly")
    return ApiError(503, "unavailable", "inventory store unreachable; retry shortly")


def redis_error_code(error: RedisError) -> str:
    """The code Redis's error reply starts with (NOREPLICAS, OOM…); redis-py puts the
    reply inside its own sentence when the command was part of a pipeline."""
    reply = str(error).rpartition("caused error: ")[2].lstrip("('\"")
    return reply.partition(" ")[0]
