"""What the inventory answers: a SKU's snapshot, a cart change's result, and its refusals."""

from __future__ import annotations

import dataclasses
import json
from typing import Any


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """The count of one SKU at one version of one epoch."""
    sku: str
    count: int
    version: int
    epoch: str
    changed_at_ms: int = 0  # Redis clock; 0 for a change made before this field existed

    def is_newer_than(self, other: Snapshot | None) -> bool:
        """A new epoch (Redis re-initialised) always wins; otherwise the higher version."""
        return other is None or self.epoch != other.epoch or self.version > other.version

    def as_dict(self) -> dict[str, Any]:
        return {"sku": self.sku, "inventoryCount": self.count,
                "version": self.version, "epoch": self.epoch, "changedAt": self.changed_at_ms}

    @classmethod
    def from_message(cls, data: bytes | str) -> Snapshot:
        """Parse a snapshot published by the scripts. Raises ValueError."""
        try:
            obj = json.loads(data)
            return cls(sku=str(obj["sku"]), count=int(obj["inventoryCount"]),
                       version=int(obj["version"]), epoch=str(obj["epoch"]),
                       changed_at_ms=int(obj.get("changedAt", 0)))
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
    server_time_ms: int  # the Redis clock when the change was made
    expires_at_ms: int  # the session's hold expiry; 0 when it holds no copy


@dataclasses.dataclass(frozen=True, slots=True)
class Hold:
    """A copy held for a session, until the Redis clock reaches expires_at_ms."""
    sku: str
    expires_at_ms: int


def as_text(value: Any) -> str:
    """A Redis reply as text (clients made without decode_responses give bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)
