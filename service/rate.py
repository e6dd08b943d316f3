"""Tweets per second (seed listings 5-1 to 5-3): the arithmetic, the upstream adapters
and the fetch.

The seed asks Twitter's v1 search API for the 100 most recent posts matching `q` and
divides their number by the seconds between the oldest one and now. That API is gone;
`twitter-v1` speaks its shape (served by our simulator, `service/upstream_sim.py`) and
`mastodon` reads a public hashtag timeline instead. Both yield post timestamps; the
arithmetic is the same.
"""

from __future__ import annotations

import dataclasses
import datetime
import email.utils
import json
import math
import re
import ssl
import time
from typing import Callable
import urllib.error
import urllib.request
from urllib.parse import quote, urlencode

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.simple_httpclient import HTTPTimeoutError

from service import keys

# what we let an upstream send us; a real page of 100 posts is far below this
MAX_UPSTREAM_BODY_BYTES = 4 * 1024 * 1024
MAX_UPSTREAM_CONNECTIONS = 100
MASTODON_PAGE = 40  # the most a Mastodon tag timeline returns per request
_TAG = re.compile(r"#?(\w{1,100})")
# Twitter v1's created_at, "Sat, 28 Nov 2026 03:54:51 +0000"; read by hand because a
# page has 100 of them and email.utils takes twice as long
_CREATED_AT = re.compile(r"(?:[A-Z][a-z]{2}, )?(\d{1,2}) ([A-Z][a-z]{2}) (\d{4}) "
                         r"(\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)")
_MONTHS = {name: number for number, name in enumerate(
    "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), start=1)}


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
    def from_json(raw: bytes | str) -> "UpstreamError":
        """The error a failed fetch stored in Redis (see keys.search_error_key)."""
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
    def from_json(cls, raw: bytes | str) -> "SearchResult":
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


def _utc_timestamp(moment: datetime.datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def parse_created_at(raw) -> float:
    """Epoch seconds of a Twitter v1 created_at; raises ValueError."""
    found = _CREATED_AT.fullmatch(raw) if isinstance(raw, str) else None
    if found is None or found.group(2) not in _MONTHS:
        # other RFC 2822 spellings (e.g. "GMT" for the zone)
        return _utc_timestamp(email.utils.parsedate_to_datetime(raw))
    day, month, year, hour, minute, second, sign, off_h, off_m = found.groups()
    offset_s = (int(off_h) * 3600 + int(off_m) * 60) * (1 if sign == "+" else -1)
    # datetime() refuses 31 Feb or 25:00, which a bare timegm() would roll over
    moment = datetime.datetime(int(year), _MONTHS[month], int(day), int(hour), int(minute),
                               int(second), tzinfo=datetime.timezone.utc)
    return moment.timestamp() - offset_s


def _json_body(body: bytes):
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
            {"q": query, "result_type": "recent", "rpp": keys.MAX_RESULTS_PER_PAGE})

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
        tag = _TAG.fullmatch(query).group(1)
        return f"{base_url}/api/v1/timelines/tag/{quote(tag, safe='')}?limit={MASTODON_PAGE}"

    def timestamps(self, body: bytes) -> list[float]:
        statuses = _json_body(body)
        if not isinstance(statuses, list):
            raise UpstreamMalformed("the upstream's answer is not an array of statuses")
        stamps = []
        for status in statuses:
            raw = status.get("created_at") if isinstance(status, dict) else None
            try:
                stamps.append(_utc_timestamp(datetime.datetime.fromisoformat(raw)))
            except (TypeError, ValueError):
                raise UpstreamMalformed(f"a status has no valid created_at ({str(raw)[:40]!r}); "
                                        "expected ISO 8601, e.g. 2026-11-28T03:54:51.000Z") from None
        return stamps


ADAPTERS = {adapter.kind: adapter for adapter in (TwitterV1, Mastodon)}


def result_from(adapter, query: str, body: bytes, fetched_at: float, fetch_s: float) -> SearchResult:
    """Parse an upstream body into a SearchResult (raises UpstreamMalformed)."""
    stamps = adapter.timestamps(body)
    oldest = min(stamps) if stamps else None
    return SearchResult(query, len(stamps), oldest, fetched_at, fetch_s,
                        tweets_per_second(len(stamps), oldest, fetched_at))


class Upstream:
    """The configured search API, fetched with Tornado's AsyncHTTPClient."""

    def __init__(self, base_url: str, kind: str, timeout_s: float,
                 observe: Callable[[str, float], None] | None = None):
        self.base_url = base_url
        self.adapter = ADAPTERS[kind]()
        self.timeout_s = timeout_s
        # told (outcome, seconds) after every fetch: "ok" or the error's code (metrics)
        self.observe = observe
        self._http: AsyncHTTPClient | None = None

    def check_query(self, query: str) -> None:
        """Raises QueryNotSupported when this upstream cannot search for `query`."""
        self.adapter.check_query(query)

    @property
    def http(self) -> AsyncHTTPClient:
        # made on first use, inside the running loop; `stock` commands never make one
        if self._http is None:
            self._http = AsyncHTTPClient(force_instance=True, max_clients=MAX_UPSTREAM_CONNECTIONS,
                                         max_body_size=MAX_UPSTREAM_BODY_BYTES)
        return self._http

    async def search(self, query: str) -> SearchResult:
        """Ask the upstream; raises an UpstreamError subclass for every kind of failure."""
        started = time.monotonic()
        outcome = "ok"
        try:
            return await self._search(query)
        except UpstreamError as exc:
            outcome = exc.code
            raise
        finally:
            if self.observe is not None:
                self.observe(outcome, time.monotonic() - started)

    async def _search(self, query: str) -> SearchResult:
        request = HTTPRequest(self.adapter.url(self.base_url, query),
                              headers={"Accept": "application/json"}, follow_redirects=False,
                              connect_timeout=self.timeout_s, request_timeout=self.timeout_s)
        started = time.monotonic()
        try:
            response = await self.http.fetch(request, raise_error=False)
        except HTTPTimeoutError:
            raise UpstreamTimeout(f"the upstream search API did not answer within "
                                  f"{self.timeout_s:g} s") from None
        except (HTTPClientError, OSError, ssl.SSLError) as exc:
            raise UpstreamUnreachable(f"cannot reach the upstream search API "
                                      f"({type(exc).__name__}: {exc})") from None
        fetch_s = time.monotonic() - started
        if response.code != 200:
            raise UpstreamError(f"the upstream search API answered HTTP {response.code}")
        return result_from(self.adapter, query, response.body or b"", time.time(), fetch_s)

    async def aclose(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None


def search_blocking(upstream: Upstream, query: str) -> SearchResult:
    """Listing 5-1's way, on purpose: a blocking fetch that stalls the whole process.

    Only the `--demo-blocking` handler uses it. Tornado's own blocking HTTPClient refuses
    to run inside a running event loop, so this uses urllib, which blocks the same way.
    """
    started = time.monotonic()
    try:
        with urllib.request.urlopen(upstream.adapter.url(upstream.base_url, query),
                                    timeout=upstream.timeout_s) as reply:
            body = reply.read(MAX_UPSTREAM_BODY_BYTES)
    except urllib.error.HTTPError as exc:
        raise UpstreamError(f"the upstream search API answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        if isinstance(exc, TimeoutError) or isinstance(getattr(exc, "reason", None), TimeoutError):
            raise UpstreamTimeout(f"the upstream search API did not answer within "
                                  f"{upstream.timeout_s:g} s") from None
        raise UpstreamUnreachable(f"cannot reach the upstream search API ({exc})") from None
    return result_from(upstream.adapter, query, body, time.time(), time.monotonic() - started)
