"""The `since` cursor protocol: what a client last saw of each SKU, `epoch:version`."""

from __future__ import annotations

from service.live import Entry
from service.web.errors import ApiError

Cursor = tuple[str | None, int]  # (epoch, or None for a bare version; version)


def parse_cursors(raw: str | None, count: int) -> list[Cursor] | None:
    """Parse `since`: one `epoch:version` (or bare `version`) per SKU, comma-separated."""
    if raw is None:
        return None
    tokens = raw.split(",")
    if len(tokens) != count:
        raise ApiError(400, "bad_since", f"since has {len(tokens)} cursor(s) for {count} SKU(s); "
                       "give one epoch:version per sku, comma-separated, in the same order")
    cursors = []
    for token in tokens:
        epoch, _, version = token.rpartition(":")
        # isdigit alone would take "²" and other digits int() cannot read
        if not (version.isascii() and version.isdigit()) or len(version) > 15 or len(epoch) > 64:
            raise ApiError(400, "bad_since", f"bad cursor {token[:80]!r}: expected epoch:version "
                           "(e.g. 3f2a9c1d:17) or a bare version number")
        cursors.append((epoch or None, int(version)))
    return cursors


def is_behind(entry: Entry, cursor: Cursor) -> bool:
    """Whether `entry` is older, within the same epoch, than what the client has seen (it
    saw a newer version through another instance). A bare version counts as this epoch's."""
    epoch, version = cursor
    snapshot = entry.snapshot
    return (epoch is None or epoch == snapshot.epoch) and snapshot.version < version


def is_ahead_of(entry: Entry, cursor: Cursor) -> bool:
    """Whether the client holding `cursor` has not seen `entry` yet."""
    epoch, version = cursor
    snapshot = entry.snapshot
    return (epoch is not None and epoch != snapshot.epoch) or snapshot.version > version
