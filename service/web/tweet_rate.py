"""Tweets per second: `GET /rate?q=` (the seed's page) and `GET /api/rate?q=` (JSON).

`GET /rate/blocking?q=` is seed listing 5-1 kept as a bad example for `make bench-seed`:
routed only when the instance runs with `serve --demo-blocking`.
"""

from __future__ import annotations

import math
import time
from typing import Any

import tornado.web
from redis.exceptions import RedisError

from service import redis_keys
from service.search import Lookup, QueryNotSupported, SearchResult, UpstreamError
from service.search.cache import HIT
from service.search.result import iso_utc, normalise
from service.search.upstream import Upstream, search_blocking
from service.web import limits
from service.web.base import BaseHandler
from service.web.errors import ApiError

# Rendered pages of cache hits, by (result, age in whole seconds): a hot query's page is
# rendered about once a second per instance, not once per request. Small and bounded:
# cleared whenever it fills up (old entries are useless a second later anyway).
_HIT_PAGES: dict[tuple[SearchResult, int], bytes] = {}
MAX_HIT_PAGES = 256

CACHE_LABELS = {
    "miss": "fetched just now for you",
    "hit": "from the shared cache",
    "stale": "from the shared cache, stale: a refresh is on its way",
    "coalesced": "fetched just now, shared with other requests for the same query",
    "none": "fetched just now, no cache (blocking demo)",
}


class RateBase(BaseHandler):
    def search_query(self) -> str:
        """`q`, trimmed; 400 when missing, empty or over limits.MAX_QUERY_CHARS characters."""
        raw = self.get_query_argument("q", "").strip()
        if not raw:
            raise ApiError(400, "missing_query", "give a search query, e.g. /rate?q=pants")
        if len(raw) > limits.MAX_QUERY_CHARS:
            raise ApiError(400, "query_too_long", f"the query has {len(raw)} characters; "
                           f"at most {limits.MAX_QUERY_CHARS} are allowed")
        return normalise(raw)

    async def lookup(self, query: str) -> Lookup:
        if self.services.search is None:
            raise ApiError(503, "unavailable", "search is not set up on this instance")
        try:
            found = await self.services.search.lookup(query)
        except QueryNotSupported as exc:
            raise ApiError(400, "bad_query", str(exc)) from None
        except UpstreamError as exc:
            raise _upstream_error(exc) from None
        except RedisError as exc:
            raise ApiError(503, "unavailable",
                           f"the search cache is unreachable ({type(exc).__name__}); "
                           "retry shortly") from None
        self.services.metrics.search_lookups.labels(found.cache).inc()
        return found

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if status_code in (502, 504):
            # failures are remembered this long; asking sooner gets the same answer
            self.set_header("Retry-After", str(math.ceil(redis_keys.SEARCH_ERROR_TTL_S)))
        super().write_error(status_code, **kwargs)


def _upstream_error(exc: UpstreamError) -> ApiError:
    return ApiError(exc.status, exc.code, exc.message)


class RateApiHandler(RateBase):
    async def get(self) -> None:
        found = await self.lookup(self.search_query())
        self.write_json(found.as_api(self.services.config.instance_id))


class RatePageHandler(RateBase):
    """The seed's page: the query, the rate in big digits, "tweets per second"."""

    async def get(self) -> None:
        found = await self.lookup(self.search_query())
        self.render_rate(found.result.query, found)

    def wants_html(self) -> bool:
        # a page route answers errors as a page unless JSON is asked for explicitly
        return not self.request.headers.get("Accept", "").startswith("application/json")

    def render_rate(self, query: str, found: Lookup | None, error: str | None = None) -> None:
        self.set_header("Cache-Control", "no-store")
        result = found.result if found else None
        age_s = max(0, int(time.time() - result.fetched_at)) if result else 0
        memo = (result, age_s) if result and found and found.cache == HIT and not error else None
        page = _HIT_PAGES.get(memo) if memo else None
        if page is None:
            page = self.render_string(
                "rate.html", query=query, result=result, error=error,
                cache=found.cache if found else None, cache_labels=CACHE_LABELS, age_s=age_s,
                iso_utc=iso_utc, instance=self.services.config.instance_id)
            if memo:
                if len(_HIT_PAGES) >= MAX_HIT_PAGES:
                    _HIT_PAGES.clear()
                _HIT_PAGES[memo] = page
        # what render() would do: the template uses no UI modules, so nothing to inject
        self.finish(page)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(error, ApiError) and self.wants_html() and status_code != 503:
            if status_code in (502, 504):
                self.set_header("Retry-After", str(math.ceil(redis_keys.SEARCH_ERROR_TTL_S)))
            try:
                query = self.get_query_argument("q", "").strip()[:limits.MAX_QUERY_CHARS]
            except tornado.web.HTTPError:  # q that is not UTF-8
                query = ""
            # the search form again, with what went wrong
            self.render_rate(query, None, error.message)
            return
        super().write_error(status_code, **kwargs)


class BlockingRateHandler(RatePageHandler):
    """Seed listing 5-1, on purpose: the fetch blocks the whole process, so while one
    request waits on the upstream no other request on this instance is served."""

    def get(self) -> None:  # type: ignore[override]  # synchronous on purpose: it blocks
        query = self.search_query()
        upstream = self.services.search.upstream if self.services.search else None
        if not isinstance(upstream, Upstream):
            raise ApiError(503, "unavailable", "search is not set up on this instance")
        try:
            upstream.check_query(query)
            result = search_blocking(upstream, query)
        except QueryNotSupported as exc:
            raise ApiError(400, "bad_query", str(exc)) from None
        except UpstreamError as exc:
            raise _upstream_error(exc) from None
        self.render_rate(query, Lookup(result, "none"))

