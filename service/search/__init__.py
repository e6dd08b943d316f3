"""Tweets per second (seed listings 5-1 to 5-3): the upstream search API behind a Redis
cache that every instance shares."""

from service.search.cache import SearchCache
from service.search.result import (
                                   Lookup,
                                   QueryNotSupported,
                                   SearchResult,
                                   UpstreamError,
                                   UpstreamTimeout,
)
from service.search.upstream import Upstream

__all__ = ["Lookup", "QueryNotSupported", "SearchCache", "SearchResult", "Upstream",
           "UpstreamError", "UpstreamTimeout"]
