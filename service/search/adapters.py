"""The upstream search APIs the shop can read, each turned into post timestamps."""

from __future__ import annotations

import datetime
import email.utils
import json
import re
from typing import Any, Protocol
from urllib.parse import quote, urlencode

from service.search.result import (
    QueryNotSupported,
    SearchResult,
    UpstreamMalformed,
    tweets_per_second,
)

# the simulator and the adapters never ask for more than this many posts
MAX_RESULTS_PER_PAGE = 100
MASTODON_PAGE = 40  # the most a Mastodon tag timeline returns per request
_TAG = re.compile(r"#?(\w{1,100})")
# Twitter v1's created_at, "Sat, 28 Nov 2026 03:54:51 +0000"; read by hand because a
# page has 100 of them and email.utils takes twice as long
_CREATED_AT = re.compile(r"(?:[A-Z][a-z]{2}, )?(\d{1,2}) ([A-Z][a-z]{2}) (\d{4}) "
                         r"(\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)")
_MONTHS = {name: number for number, name in enumerate(
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], start=1)}


class Adapter(Protocol):
    """One kind of upstream: which URL to ask, and how to read its answer."""

    kind: str

    def check_query(self, query: str) -> None:
        """Raises QueryNotSupported when this upstream cannot search for `query`."""

    def url(self, base_url: str, query: str) -> str:
        """The URL that asks the upstream at `base_url` for `query`."""

    def timestamps(self, body: bytes) -> list[float]:
        """Epoch seconds of every post in the answer; raises UpstreamMalformed."""


def _utc_timestamp(moment: datetime.datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def parse_created_at(raw: Any) -> float:
    """Epoch seconds of a Twitter v1 created_at; raises ValueError."""
    found = _CREATED_AT.fullmatch(raw) if isinstance(raw, str) else None
    if found is None or found.group(2) not in _MONTHS:
        # other RFC 2822 spellings (e.g. "GMT" for the zone)
        return _utc_timestamp(email.utils.parsedate_to_datetime(raw))
    day, month, year, hour, minute, second, sign, off_h, off_m = found.groups()
    offset_s = (int(off_h) * 3600 + int(off_m) * 60) * (1 if sign == "+" else -1)
    # datetime() refuses 31 Feb or 25:00, which a bare timegm() would roll over
    moment = datetime.datetime(int(year), _MONTHS[month], int(day), int(hour), int(minute),
                               int(second), tzinfo=datetime.UTC)
    return moment.timestamp() - offset_s


def _json_body(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise UpstreamMalformed("the upstream answered something that is not JSON") from None


class TwitterV1:
    """`GET {url}/search.json?q=&result_type=recent&rpp=100`, the seed's API and shape:
    {"results": [{"created_at": "Sat, 28 Nov 2026 03:54:51 +0000", ...}, ...]}."""

    kind = "twitter-v1"

    def check_query(self, query: str) -> None:
        """Any text is a valid search."""

    def url(self, base_url: str, query: str) -> str:
        return f"{base_url}/search.json?" + urlencode(
            {"q": query, "result_type": "recent", "rpp": MAX_RESULTS_PER_PAGE})

    def timestamps(self, body: bytes) -> list[float]:
        data = _json_body(body)
        results = data.get("results") if isinstance(data, dict) else None
        if not isinstance(results, list):
            raise UpstreamMalformed("the upstream's answer has no \"results\" list")
        stamps = []
        for post in results:
            raw = post.get("created_at") if isinstance(post, dict) else None
            try:
                stamps.append(parse_created_at(raw))
            except (TypeError, ValueError, IndexError):
                raise UpstreamMalformed(f"a post has no valid created_at ({str(raw)[:40]!r}); "
                                        "expected e.g. 'Sat, 28 Nov 2026 03:54:51 +0000'") from None
        return stamps


class Mastodon:
    """`GET {url}/api/v1/timelines/tag/{tag}?limit=40`: a public hashtag timeline, an array
    of statuses with ISO 8601 `created_at` (e.g. "2026-11-28T03:54:51.000Z")."""

    kind = "mastodon"

    def check_query(self, query: str) -> None:
        if not _TAG.fullmatch(query):
            raise QueryNotSupported("this shop reads a Mastodon hashtag timeline: give one "
                                    "hashtag (letters, digits, _), e.g. ?q=tornado")

    def url(self, base_url: str, query: str) -> str:
        found = _TAG.fullmatch(query)
        if found is None:
            raise QueryNotSupported(f"not a hashtag: {query[:40]!r}")
        tag = found.group(1)
        return f"{base_url}/api/v1/timelines/tag/{quote(tag, safe='')}?limit={MASTODON_PAGE}"

    def timestamps(self, body: bytes) -> list[float]:
        statuses = _json_body(body)
        if not isinstance(statuses, list):
            raise UpstreamMalformed("the upstream's answer is not an array of statuses")
        stamps = []
        for status in statuses:
            raw = status.get("created_at") if isinstance(status, dict) else None
            try:
                stamps.append(_utc_timestamp(datetime.datetime.fromisoformat(str(raw))))
            except ValueError:
                raise UpstreamMalformed(f"a status has no valid created_at ({str(raw)[:40]!r}); "
                                        "expected ISO 8601, e.g. 2026-11-28T03:54:51.000Z"
                                        ) from None
        return stamps


ADAPTERS: dict[str, type[Adapter]] = {adapter.kind: adapter for adapter in (TwitterV1, Mastodon)}


def result_from(adapter: Adapter, query: str, body: bytes, fetched_at: float,
                fetch_s: float) -> SearchResult:
    """Parse an upstream body into a SearchResult (raises UpstreamMalformed)."""
    stamps = adapter.timestamps(body)
    oldest = min(stamps) if stamps else None
    return SearchResult(query, len(stamps), oldest, fetched_at, fetch_s,
                        tweets_per_second(len(stamps), oldest, fetched_at))
