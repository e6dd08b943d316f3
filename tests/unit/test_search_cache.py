"""The shared search cache on fakeredis (with Lua): hits, single flight in a process and
across "processes" (two caches on one fake server), stale-while-revalidate, XFetch early
refresh, failure caching, a lock holder that dies, and a clean shutdown."""

from __future__ import annotations

import asyncio

import fakeredis
import pytest

from service import redis_keys as keys
from service.search import cache as search_cache
from service.search.cache import COALESCED, HIT, MISS, STALE, SearchCache
from service.search.result import (
    QueryNotSupported,
    SearchResult,
    UpstreamError,
    UpstreamTimeout,
    normalise,
    query_hash,
)

pytestmark = pytest.mark.timeout(20)

FRESH_S, STALE_S = 30.0, 300.0


class Clock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class Tally:
    """A count a test can wait on: `await tally.reach(n)` returns once it is n or more."""

    def __init__(self):
        self.value = 0
        self._waiters: list[tuple[int, asyncio.Future]] = []

    def add(self) -> None:
        self.value += 1
        for target, waiter in self._waiters:
            if self.value >= target and not waiter.done():
                waiter.set_result(None)

    async def reach(self, target: int, timeout_s: float = 5) -> None:
        if self.value >= target:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((target, waiter))
        await asyncio.wait_for(waiter, timeout_s)


class FakeUpstream:
    """Counts searches; `gate` holds them until set; `error` makes them fail."""

    def __init__(self, clock: Clock, fetch_s: float = 0.3):
        self.clock = clock
        self.fetch_s = fetch_s
        self.calls: list[str] = []
        self.entered = Tally()  # searches that reached the upstream
        self.gate: asyncio.Event | None = None
        self.error: UpstreamError | None = None
        self.closed = False

    def check_query(self, query: str) -> None:
        if query.startswith("unsupported"):
            raise QueryNotSupported("not here")

    async def search(self, query: str) -> SearchResult:
        self.calls.append(query)
        self.entered.add()
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        n = len(self.calls)
        return SearchResult(query, n, self.clock() - 100, self.clock(), self.fetch_s, n / 100)

    async def aclose(self) -> None:
        self.closed = True


class CountingRedis(fakeredis.FakeAsyncRedis):
    """Counts the reads of cached values (GET and MGET), and the answered MGETs (a
    lookup's first read: once answered, the lookup has joined or started a fill)."""

    gets = 0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.mgets_answered = Tally()

    async def get(self, *args, **kwargs):
        self.gets += 1
        return await super().get(*args, **kwargs)

    async def mget(self, *args, **kwargs):
        self.gets += 1
        values = await super().mget(*args, **kwargs)
        self.mgets_answered.add()
        return values


class CountingCache(SearchCache):
    """Counts lock attempts, to show that local requests share one."""

    lock_attempts = 0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.locks_answered = Tally()

    async def _lock_and_read(self, *args):
        self.lock_attempts += 1
        answer = await super()._lock_and_read(*args)
        self.locks_answered.add()
        return answer


@pytest.fixture
def server():
    return fakeredis.FakeServer()


@pytest.fixture
def clock():
    return Clock()


def make_cache(server, clock, rand=lambda: 0.0, timeout_s: float = 2.0):
    """A cache as one process has it; rand=0 turns XFetch's early refresh off."""
    redis = CountingRedis(server=server)
    upstream = FakeUpstream(clock)
    cache = CountingCache(redis, upstream, fresh_s=FRESH_S, stale_s=STALE_S,
                        upstream_timeout_s=timeout_s, clock=clock, rand=rand)
    return cache, upstream, redis


async def settle(cache: SearchCache, timeout_s: float = 5) -> None:
    """Wait until the cache's background tasks are done."""
    async with asyncio.timeout(timeout_s):
        await cache.wait_idle()


async def test_miss_then_hit(server, clock):
    cache, upstream, redis = make_cache(server, clock)
    first = await cache.lookup("  pants ")
    second = await cache.lookup("pants")
    assert (first.cache, second.cache) == (MISS, HIT)
    assert first.result == second.result and upstream.calls == ["pants"]
    assert await redis.get(keys.search_key(query_hash("pants"))) is not None
    ttl_ms = await redis.pttl(keys.search_key(query_hash("pants")))
    assert (FRESH_S + STALE_S - 5) * 1000 < ttl_ms <= (FRESH_S + STALE_S) * 1000
    assert await redis.exists(keys.search_lock_key(query_hash("pants"))) == 0


def test_queries_are_normalised_before_hashing():
    assert normalise("  pants   and\tshirts ") == "pants and shirts"
    assert query_hash("pants  and shirts") == query_hash(" pants and shirts")
    assert query_hash("pants") != query_hash("Pants")
    assert keys.search_key(query_hash("pants")).startswith("bb:search:")


async def test_concurrent_local_requests_share_one_fetch_and_one_lock_attempt(server, clock):
    cache, upstream, redis = make_cache(server, clock)
    upstream.gate = asyncio.Event()
    lookups = [asyncio.ensure_future(cache.lookup("pants")) for _ in range(25)]
    await redis.mgets_answered.reach(25)  # every lookup has joined the one fill
    await upstream.entered.reach(1)
    upstream.gate.set()
    found = await asyncio.gather(*lookups)
    assert upstream.calls == ["pants"]
    assert cache.lock_attempts == 1
    assert sorted(f.cache for f in found) == [COALESCED] * 24 + [MISS]
    assert len({f.result for f in found}) == 1


async def test_concurrent_requests_on_two_processes_make_one_upstream_request(server, clock):
    cache_a, upstream_a, redis_a = make_cache(server, clock)
    cache_b, upstream_b, redis_b = make_cache(server, clock)
    upstream_a.gate, upstream_b.gate = asyncio.Event(), asyncio.Event()
    lookups = [asyncio.ensure_future((cache_a if i % 2 else cache_b).lookup("pants"))
               for i in range(40)]
    # every lookup is waiting: one fill on the upstream, the other process's fill on it
    await redis_a.mgets_answered.reach(20)
    await redis_b.mgets_answered.reach(20)
    await cache_a.locks_answered.reach(1)
    await cache_b.locks_answered.reach(1)
    upstream_a.gate.set()
    upstream_b.gate.set()
    found = await asyncio.gather(*lookups)
    assert len(upstream_a.calls) + len(upstream_b.calls) == 1
    assert sorted(f.cache for f in found) == [COALESCED] * 39 + [MISS]
    assert len({f.result for f in found}) == 1


async def test_waiters_get_the_holders_error_without_fetching(server, clock):
    cache_a, upstream_a, _ = make_cache(server, clock)
    cache_b, upstream_b, _ = make_cache(server, clock)
    upstream_a.gate, upstream_b.gate = asyncio.Event(), asyncio.Event()
    upstream_a.error = upstream_b.error = UpstreamTimeout("too slow")
    lookups = [asyncio.ensure_future(c.lookup("pants")) for c in (cache_a, cache_b) * 5]
    # one fill holds the lock on the upstream; the other process's fill has found it taken
    await cache_a.locks_answered.reach(1)
    await cache_b.locks_answered.reach(1)
    upstream_a.gate.set()
    upstream_b.gate.set()
    outcomes = await asyncio.gather(*lookups, return_exceptions=True)
    assert all(isinstance(o, UpstreamTimeout) for o in outcomes)
    assert len(upstream_a.calls) + len(upstream_b.calls) == 1


async def test_a_failure_is_remembered_briefly(server, clock):
    cache, upstream, redis = make_cache(server, clock)
    upstream.error = UpstreamError("the upstream search API answered HTTP 500")
    for _ in range(3):
        with pytest.raises(UpstreamError, match="HTTP 500"):
            await cache.lookup("pants")
    assert upstream.calls == ["pants"]
    error_key = keys.search_error_key(query_hash("pants"))
    assert 0 < await redis.pttl(error_key) <= keys.SEARCH_ERROR_TTL_S * 1000
    await redis.delete(error_key)  # as if its TTL ran out
    upstream.error = None
    assert (await cache.lookup("pants")).cache == MISS
    assert await redis.exists(error_key) == 0


async def test_stale_is_served_at_once_and_refreshed_once_in_the_background(server, clock):
    cache, upstream, _ = make_cache(server, clock)
    cache_b, upstream_b, _ = make_cache(server, clock)
    first = await cache.lookup("pants")
    clock.now += FRESH_S + 1
    upstream.gate = asyncio.Event()
    stale = await asyncio.gather(*[c.lookup("pants") for c in (cache, cache_b) * 5])
    assert {s.cache for s in stale} == {STALE} and {s.result for s in stale} == {first.result}
    upstream.gate.set()
    await settle(cache)
    await settle(cache_b)
    # one refresh across both processes: the other found the lock taken
    assert len(upstream.calls) + len(upstream_b.calls) == 2
    fresh = await cache_b.lookup("pants")
    assert fresh.cache == HIT and fresh.result.fetched_at == clock.now


async def test_stale_is_served_while_the_upstream_is_down(server, clock):
    cache, upstream, redis = make_cache(server, clock)
    first = await cache.lookup("pants")
    clock.now += FRESH_S + 1
    upstream.error = UpstreamTimeout("down")
    for _ in range(3):
        found = await cache.lookup("pants")
        assert (found.cache, found.result) == (STALE, first.result)
        await settle(cache)
    # the first background refresh failed; the remembered failure held back the others
    assert upstream.calls == ["pants", "pants"]
    assert await redis.exists(keys.search_error_key(query_hash("pants"))) == 1


async def test_after_the_stale_window_it_is_a_miss(server, clock):
    cache, upstream, _ = make_cache(server, clock)
    await cache.lookup("pants")
    clock.now += FRESH_S + STALE_S + 1
    upstream.error = UpstreamError("down")
    with pytest.raises(UpstreamError):
        await cache.lookup("pants")  # too old to serve even when the upstream fails
    upstream.error = None
    await cache.redis.delete(keys.search_error_key(query_hash("pants")))
    assert (await cache.lookup("pants")).cache == MISS


async def test_xfetch_refreshes_a_hot_query_before_it_expires(server, clock):
    draws = [0.0]
    cache, upstream, _ = make_cache(server, clock, rand=lambda: draws[0])
    upstream.fetch_s = 1.0  # delta: the upstream took a second
    await cache.lookup("pants")
    clock.now += FRESH_S - 10  # 10 s before expiry
    draws[0] = 0.99  # -ln(0.01) * 1 s = 4.6 s of look-ahead: not yet
    assert (await cache.lookup("pants")).cache == HIT
    await settle(cache)
    assert upstream.calls == ["pants"]
    draws[0] = 0.99999  # -ln(1e-5) * 1 s = 11.5 s: early refresh now
    assert (await cache.lookup("pants")).cache == HIT
    await settle(cache)
    assert upstream.calls == ["pants", "pants"]
    renewed = await cache.lookup("pants")
    assert renewed.cache == HIT and renewed.result.fetched_at == clock.now


async def test_xfetch_stays_quiet_far_from_expiry(server, clock):
    cache, upstream, _ = make_cache(server, clock, rand=lambda: 0.999999)
    upstream.fetch_s = 0.05
    await cache.lookup("pants")
    clock.now += 1  # 29 s left; look-ahead -ln(1e-6) * 0.05 s = 0.7 s
    for _ in range(20):
        assert (await cache.lookup("pants")).cache == HIT
    await settle(cache)
    assert upstream.calls == ["pants"]


async def test_a_hot_query_reads_redis_once_per_local_ttl(server, clock):
    cache, _upstream, redis = make_cache(server, clock)
    other, _, _ = make_cache(server, clock)
    await cache.lookup("pants")
    gets = redis.gets
    for _ in range(100):
        assert (await cache.lookup("pants")).cache == HIT
    assert redis.gets == gets  # served from this process's near cache
    # another instance renews it; this one sees the new value once its local copy lapses
    clock.now += 0.5
    await other.redis.delete(keys.search_key(query_hash("pants")))
    renewed = await other.lookup("pants")
    assert renewed.cache == MISS
    assert (await cache.lookup("pants")).result != renewed.result  # kept for up to 1 s
    clock.now += search_cache.LOCAL_TTL_S
    assert (await cache.lookup("pants")).result == renewed.result
    assert redis.gets == gets + 1


async def test_the_near_cache_never_serves_past_freshness(server, clock):
    cache, _upstream, _ = make_cache(server, clock)
    await cache.lookup("pants")
    clock.now += FRESH_S - 0.5  # the local copy would still be young, the value is not
    assert (await cache.lookup("pants")).cache == HIT
    clock.now += 0.6
    assert (await cache.lookup("pants")).cache == STALE
    await settle(cache)


async def test_a_dead_lock_holder_is_taken_over(server, clock):
    cache, upstream, redis = make_cache(server, clock)
    lock = keys.search_lock_key(query_hash("pants"))
    await redis.set(lock, "another-instance-that-died", px=300)
    found = await cache.lookup("pants")
    assert found.cache == MISS and upstream.calls == ["pants"]


async def test_the_lock_is_released_only_by_its_owner(server, clock):
    cache, _, redis = make_cache(server, clock)
    lock = keys.search_lock_key(query_hash("pants"))
    await redis.set(lock, "theirs")
    await cache._release(lock, "mine")
    assert await redis.get(lock) == b"theirs"
    await cache._release(lock, "theirs")
    assert await redis.exists(lock) == 0


async def test_unreadable_cached_value_is_refetched(server, clock):
    cache, upstream, redis = make_cache(server, clock)
    await redis.set(keys.search_key(query_hash("pants")), b"{garbage")
    assert (await cache.lookup("pants")).cache == MISS and upstream.calls == ["pants"]


async def test_unsupported_query_touches_nothing(server, clock):
    cache, upstream, redis = make_cache(server, clock)
    with pytest.raises(QueryNotSupported):
        await cache.lookup("unsupported query")
    assert upstream.calls == [] and await redis.dbsize() == 0


async def test_aclose_cancels_background_refreshes(server, clock):
    cache, upstream, redis = make_cache(server, clock)
    await cache.lookup("pants")
    clock.now += FRESH_S + 1
    upstream.gate = asyncio.Event()  # the refresh hangs on the upstream
    assert (await cache.lookup("pants")).cache == STALE
    await upstream.entered.reach(2)  # the background refresh waits on the upstream
    assert cache.running_tasks() == 1
    await cache.aclose()
    assert cache.running_tasks() == 0 and upstream.closed
    # the cancelled refresh gave its lock back
    assert await redis.exists(keys.search_lock_key(query_hash("pants"))) == 0
