"""What a search yields: the result, the tweet-rate arithmetic, and the upstream's failures.

The seed asks Twitter's v1 search API for the 100 most recent posts matching `q` and
divides their number by the seconds between the oldest one and now. That API is gone;
the adapters (`service.search.adapters`) read its shape from our simulator, or a Mastodon
hashtag timeline instead. Both yield post timestamps; the arithmetic is the same.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import math
from typing import Any


class UpstreamError(Exception):
    """The upstream did not give a usable answer; `status` and `code` are what we answer."""

    status = 502
    code = "upstream_error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def to_json(self) -> str:
        return json.dumps({"code": self.code, "message": self.message})

    @staticmethod
    def from_json(raw: bytes | str) -> UpstreamError:
        """The error a failed fetch stored in Redis (see redis_keys.search_error_key)."""
        try:
            data = json.loads(raw)
            kind = _ERRORS.get(data["code"], UpstreamError)
            return kind(str(data["message"]))
        except (ValueError, KeyError, TypeError):
            return UpstreamError("the upstream search API failed a moment ago")


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


class UpstreamUnreachable(UpstreamError):
    code = "upstream_unreachable"


class UpstreamMalformed(UpstreamError):
    code = "upstream_malformed"


_ERRORS = {kind.code: kind for kind in (UpstreamError, UpstreamTimeout, UpstreamUnreachable,
                                        UpstreamMalformed)}


class QueryNotSupported(ValueError):
    """The query cannot be asked of this kind of upstream (e.g. not a Mastodon hashtag)."""


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """One upstream answer, reduced to what the page shows. Times are epoch seconds."""

    query: str
    result_count: int
    oldest: float | None  # None when the upstream found nothing
    fetched_at: float
    fetch_s: float  # how long the upstream took: XFetch's delta
    tweets_per_second: float

    def to_json(self) -> str:
        return json.dumps({"q": self.query, "n": self.result_count, "oldest": self.oldest,
                           "at": self.fetched_at, "delta": self.fetch_s,
                           "rate": self.tweets_per_second})

    @classmethod
    def from_json(cls, raw: bytes | str) -> SearchResult:
        """Raises ValueError for anything that is not what to_json wrote."""
        try:
            data = json.loads(raw)
            oldest = data["oldest"]
            return cls(str(data["q"]), int(data["n"]), None if oldest is None else float(oldest),
                       float(data["at"]), float(data["delta"]), float(data["rate"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a cached search result: {exc}") from None


def tweets_per_second(result_count: int, oldest: float | None, now: float) -> float:
    """Posts per second as listing 5-1 computes it: count / (now - oldest), in whole seconds.

    The seed subtracts `time.mktime` of two timetuples, so both ends are whole seconds.
    Where it crashes we answer instead: no posts is a rate of 0 (the seed indexes
    results[-1]), and a span under one second (the oldest post is from this very second,
    or a skewed clock puts it in the future) counts as one second (the seed divides by 0).
    """
    if result_count <= 0 or oldest is None:
        return 0.0
    span_s = math.floor(now) - math.floor(oldest)
    return result_count / max(span_s, 1)


def normalise(query: str) -> str:
    """The form a query is searched and cached under: trimmed, inner whitespace collapsed."""
    return " ".join(query.split())


def query_hash(query: str) -> str:
    return hashlib.sha256(normalise(query).encode()).hexdigest()


def iso_utc(epoch_s: float | None) -> str | None:
    if epoch_s is None:
        return None
    moment = datetime.datetime.fromtimestamp(epoch_s, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclasses.dataclass(frozen=True)
class Lookup:
    """A result and how the cache produced it (miss, hit, stale or coalesced)."""

    result: SearchResult
    cache: str

    def as_api(self, instance: str) -> dict[str, Any]:
        """The JSON of `GET /api/rate`."""
        r = self.result
        return {"query": r.query, "tweetsPerSecond": r.tweets_per_second,
                "resultCount": r.result_count, "oldest": iso_utc(r.oldest),
                "fetchedAt": iso_utc(r.fetched_at), "cache": self.cache, "instance": instance}
