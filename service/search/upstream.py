"""The fetch from the configured upstream: asynchronous, and listing 5-1's blocking way."""

from __future__ import annotations

import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Protocol

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.simple_httpclient import HTTPTimeoutError

from service.search.adapters import ADAPTERS, result_from
from service.search.result import SearchResult, UpstreamError, UpstreamTimeout, UpstreamUnreachable

# what we let an upstream send us; a real page of 100 posts is far below this
MAX_UPSTREAM_BODY_BYTES = 4 * 1024 * 1024
MAX_UPSTREAM_CONNECTIONS = 100


class Source(Protocol):
    """What the cache asks on a miss: an upstream (Upstream below, or a test's stand-in)."""

    def check_query(self, query: str) -> None:
        """Raises QueryNotSupported when the source cannot search for `query`."""

    async def search(self, query: str) -> SearchResult:
        """Fetch a result now; raises UpstreamError."""

    async def aclose(self) -> None:
        """Release the source's connections."""


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
