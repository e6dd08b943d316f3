"""The search cache every instance shares, in Redis.

A result is *fresh* for `fresh_s` after it was fetched, then *stale* for `stale_s`: a
stale result is answered at once while one background refresh runs. Freshness is
judged by the reader from the stored fetch time, so instances agree without clocks in
Redis (they share the host's clock, or NTP).

Single flight. A cold query costs one upstream request however many requests, on
however many instances, ask for it at once:
  * in a process, the first request starts one task per query and the others await it,
    so 25 local requests touch Redis as one;
  * across processes, that task takes a Redis lock (SET NX PX with a random token,
    released by a compare-and-delete script). Whoever holds it fetches and writes the
    value; the others poll the value key every ~20 ms, bounded by the upstream timeout.
    Polling needs no pub/sub connection and survives a holder that dies: its lock
    expires, and the next poller takes it over.
Answers obtained from someone else's fetch are `coalesced`.

Early refresh (XFetch: Vattani, Chierichetti, Lowenstein, "Optimal Probabilistic Cache
Stampede Prevention", VLDB 2015). Each value carries its fetch duration `delta`; a fresh
hit also refreshes in the background when `now - delta * beta * ln(rand()) >= expiry`.
The closer the expiry and the slower the upstream, the likelier; a hot query is renewed
before it goes stale and a cold one is left to expire.

Near cache. A process keeps each fresh result it has seen for LOCAL_TTL_S
(and never past its freshness), so a hot query costs Redis one GET per second per
instance instead of one per request; a value another instance renewed shows here within
that second. Only fresh values are kept locally: stale ones always go back to Redis.

Failures are remembered for redis_keys.SEARCH_ERROR_TTL_S: requests for a query whose fetch
just failed get the same error (or the stale value) without touching the upstream.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import secrets
import time
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from service import redis_keys
from service.search.keyed_tasks import KeyedTasks
from service.search.result import (
    Lookup,
    SearchResult,
    UpstreamError,
    UpstreamTimeout,
    normalise,
    query_hash,
)
from service.search.upstream import Source

log = logging.getLogger(__name__)

MISS, HIT, STALE, COALESCED = "miss", "hit", "stale", "coalesced"
XFETCH_BETA = 1.0
# the lock outlives the upstream timeout by this much, so a holder that dies mid-fetch
# blocks the others for at most timeout + this
LOCK_EXTRA_MS = 2000
# how often a waiter looks for the lock holder's result (jittered +-20%)
POLL_INTERVAL_S = 0.02
# a process keeps a fresh result it has read this long, at most, before asking Redis
# again: a hot query costs Redis one GET per second per instance, not one per request
LOCAL_TTL_S = 1.0
LOCAL_MAX_ENTRIES = 1000

# Delete the lock only if it is still ours: it may have expired and been taken by
# another instance while our fetch ran long.
RELEASE_LOCK_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


Fill = tuple[SearchResult, bool]  # a result, and whether this process fetched it


class SearchCache:
    """Looks queries up in Redis, fetching through `upstream` (which it owns and closes)."""

    def __init__(self, redis: aioredis.Redis, upstream: Source, *, fresh_s: float, stale_s: float,
                 upstream_timeout_s: float, clock: Callable[[], float] = time.time,
                 rand: Callable[[], float] = random.random):
        self.redis = redis
        self.upstream = upstream
        self.fresh_s = fresh_s
        self.stale_s = stale_s
        self.lock_ttl_ms = int(upstream_timeout_s * 1000) + LOCK_EXTRA_MS
        self.clock = clock
        self.rand = rand
        self._release_lock = redis.register_script(RELEASE_LOCK_LUA)
        self._local: dict[str, tuple[float, SearchResult]] = {}  # hash -> (until, result)
        # by query hash: the task filling a miss, and the background refresh
        self._fills: KeyedTasks[Fill] = KeyedTasks("search-fill")
        self._refreshes: KeyedTasks[None] = KeyedTasks("search-refresh")

    async def lookup(self, query: str) -> Lookup:
        """The result for `query`. Raises UpstreamError (when nothing usable is cached),
        QueryNotSupported, or RedisError."""
        query = normalise(query)
        self.upstream.check_query(query)
        digest = query_hash(query)
        local = self._local.get(digest)
        if local is not None:
            until, entry = local
            now = self.clock()
            if now < until:
                if self._xfetch_due(entry, now):
                    self._refresh_soon(query, digest, entry)
                return Lookup(entry, HIT)
            self._local.pop(digest, None)
        flight = self._fills.get(digest)
        if flight is not None:  # this process is already filling this miss: share it
            result, _ = await asyncio.shield(flight)
            return Lookup(result, COALESCED)
        raw, failure = await self.redis.mget(redis_keys.search_key(digest),
                                             redis_keys.search_error_key(digest))
        cached = self._decode(raw)
        now = self.clock()
        if cached is not None:
            if self._is_fresh(cached, now):
                self._remember(digest, cached)
                if self._xfetch_due(cached, now):
                    self._refresh_soon(query, digest, cached)
                return Lookup(cached, HIT)
            if now - cached.fetched_at < self.fresh_s + self.stale_s:
                self._refresh_soon(query, digest, cached)
                return Lookup(cached, STALE)
        if failure is not None:
            raise UpstreamError.from_json(failure)
        # the await above let other requests in: one of them may have started the fill
        flight = self._fills.get(digest)
        mine = flight is None
        if flight is None:
            flight = self._fills.start(digest, self._fill(query, digest))
        result, fetched_here = await asyncio.shield(flight)
        return Lookup(result, MISS if mine and fetched_here else COALESCED)

    def running_tasks(self) -> int:
        """Fills and background refreshes running in this process."""
        return len(self._fills) + len(self._refreshes)

    async def wait_idle(self) -> None:
        """Return once no fill or background refresh runs in this process."""
        while self.running_tasks():
            await self._fills.wait()
            await self._refreshes.wait()

    async def aclose(self) -> None:
        """Cancel fills and background refreshes, then close the upstream client."""
        await self._refreshes.aclose()
        await self._fills.aclose()
        await self.upstream.aclose()

    # ------------------------------------------------------------------ internals

    def _remember(self, digest: str, entry: SearchResult) -> None:
        """Keep a fresh result in this process for a moment (the near cache)."""
        until = min(self.clock() + LOCAL_TTL_S, entry.fetched_at + self.fresh_s)
        self._local.pop(digest, None)
        if len(self._local) >= LOCAL_MAX_ENTRIES:
            self._local.pop(next(iter(self._local)))  # the longest-kept one
        self._local[digest] = (until, entry)

    def _is_fresh(self, entry: SearchResult, now: float) -> bool:
        return now - entry.fetched_at < self.fresh_s

    def _xfetch_due(self, entry: SearchResult, now: float) -> bool:
        expiry = entry.fetched_at + self.fresh_s
        # 1 - random() lies in (0, 1], so the log is finite
        return now - entry.fetch_s * XFETCH_BETA * math.log(1.0 - self.rand()) >= expiry

    def _decode(self, raw: bytes | str | None) -> SearchResult | None:
        if raw is None:
            return None
        try:
            return SearchResult.from_json(raw)
        except ValueError as exc:  # written by another version, or by hand: refetch it
            log.warning("ignoring an unreadable cached search result (%s)", exc)
            return None

    async def _fill(self, query: str, digest: str) -> Fill:
        """Fill a miss, cluster-wide single flight: (result, whether we fetched it)."""
        lock = redis_keys.search_lock_key(digest)
        # a holder gets lock_ttl to finish; a waiter gives up a little later
        deadline = time.monotonic() + self.lock_ttl_ms / 1000 + 1.0
        while True:
            token = secrets.token_hex(16)
            acquired, entry = await self._lock_and_read(digest, lock, token)
            # another instance may have filled it since our first read
            filled = entry if entry is not None and self._is_fresh(entry, self.clock()) else None
            if acquired and filled is None:
                return await self._fetch_and_store(query, digest, lock, token), True
            if acquired:
                await self._release(lock, token)
            if filled is not None:
                self._remember(digest, filled)
                return filled, False
            # another instance is fetching it: wait for its value, or its error
            while True:
                if time.monotonic() >= deadline:
                    raise UpstreamTimeout("timed out waiting for another instance's fetch "
                                          "of the same query")
                await asyncio.sleep(POLL_INTERVAL_S * random.uniform(0.8, 1.2))
                async with self.redis.pipeline(transaction=False) as pipe:
                    # (GETs, not MGET: redis-py refuses MGET in a Redis Cluster's pipeline)
                    pipe.get(redis_keys.search_key(digest))
                    pipe.get(redis_keys.search_error_key(digest))
                    pipe.exists(lock)
                    raw, failure, locked = await pipe.execute()
                entry = self._decode(raw)
                if entry is not None and self._is_fresh(entry, self.clock()):
                    self._remember(digest, entry)
                    return entry, False
                if failure is not None:
                    raise UpstreamError.from_json(failure)
                if not locked:
                    break  # the holder died or gave up without an answer: take over

    async def _lock_and_read(self, digest: str, lock: str,
                             token: str) -> tuple[bool, SearchResult | None]:
        """(whether we took the lock, the cached value), in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(lock, token, nx=True, px=self.lock_ttl_ms)
            pipe.get(redis_keys.search_key(digest))
            acquired, raw = await pipe.execute()
        return bool(acquired), self._decode(raw)

    async def _fetch_and_store(self, query: str, digest: str, lock: str,
                               token: str) -> SearchResult:
        """Fetch while holding the lock; write the value (or the error) and release the
        lock in one transaction, so nobody sees the lock gone and the value missing."""
        try:
            result = await self.upstream.search(query)
        except UpstreamError as exc:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.set(redis_keys.search_error_key(digest), exc.to_json(),
                         px=int(redis_keys.SEARCH_ERROR_TTL_S * 1000))
                pipe.eval(RELEASE_LOCK_LUA, 1, lock, token)
                await pipe.execute()
            raise
        except BaseException:  # cancelled (shutdown) or a bug: let someone else fetch
            await self._release(lock, token)
            raise
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(redis_keys.search_key(digest), result.to_json(),
                     px=int((self.fresh_s + self.stale_s) * 1000))
            pipe.delete(redis_keys.search_error_key(digest))
            pipe.eval(RELEASE_LOCK_LUA, 1, lock, token)
            await pipe.execute()
        self._remember(digest, result)
        return result

    async def _release(self, lock: str, token: str) -> None:
        try:
            await self._release_lock(keys=[lock], args=[token])
        except RedisError as exc:  # it expires on its own within lock_ttl_ms
            log.warning("could not release search lock %s (%s)", lock, exc)

    def _refresh_soon(self, query: str, digest: str, seen: SearchResult) -> None:
        """Start one background refresh of the query in this process, unless one runs."""
        if self._refreshes.closed or self._refreshes.get(digest) is not None:
            return
        self._refreshes.start(digest, self._refresh(query, digest, seen))

    async def _refresh(self, query: str, digest: str, seen: SearchResult) -> None:
        lock = redis_keys.search_lock_key(digest)
        try:
            if await self.redis.exists(redis_keys.search_error_key(digest)):
                return  # it just failed: keep serving what we have, leave the upstream be
            token = secrets.token_hex(16)
            acquired, current = await self._lock_and_read(digest, lock, token)
            if not acquired:
                return  # another instance (or a fill) is fetching it right now
            if current is not None and current.fetched_at > seen.fetched_at:
                await self._release(lock, token)  # refreshed elsewhere since we looked
                return
            await self._fetch_and_store(query, digest, lock, token)
        except asyncio.CancelledError:
            raise
        except UpstreamError as exc:
            log.info("background refresh of %r failed (%s); serving the cached value", query,
                     exc.message)
        except RedisError as exc:
            log.warning("background refresh of %r: Redis unavailable (%s)", query, exc)
