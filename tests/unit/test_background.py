"""Background loops stop when cancelled, even if a library swallows the cancellation."""

import asyncio
import logging

import fakeredis
import pytest

from service.config import Config
from service.inventory import Catalog, InventoryStore
from service.live import InventoryFeed, LiveHub
from service.loops import Backoff, every

pytestmark = pytest.mark.timeout(10)
log = logging.getLogger(__name__)


async def test_every_stops_when_its_step_swallows_the_cancellation():
    calls = 0

    started = asyncio.Event()

    async def swallowing_step():
        # what a redis-py command can do: catch the CancelledError and return normally
        nonlocal calls
        calls += 1
        started.set()
        try:
            await asyncio.sleep(1)
        except asyncio.CancelledError:
            pass

    task = asyncio.create_task(every(0.01, swallowing_step, log, "test loop"))
    await asyncio.wait_for(started.wait(), 2)  # the step is running
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=2)
    assert task in done and task.cancelled()
    assert calls == 1


async def test_every_logs_failures_and_keeps_going(caplog):
    outcomes = [RuntimeError("boom"), None, None]
    went_on = asyncio.Event()

    async def step():
        outcome = outcomes.pop(0) if outcomes else None
        if not outcomes:
            went_on.set()  # it failed, then ran again twice
        if outcome is not None:
            raise outcome

    task = asyncio.create_task(every(0.01, step, log, "test loop"))
    await asyncio.wait_for(went_on.wait(), 5)
    task.cancel()
    await asyncio.wait([task], timeout=2)
    assert any("test loop failed (RuntimeError: boom)" in r.message for r in caplog.records)


def test_backoff_grows_to_its_cap_with_jitter_and_never_zero():
    backoff = Backoff(base_s=0.1, cap_s=1.0)
    delays = [backoff.next_delay_s() for _ in range(50)]
    assert all(0.05 <= d <= 1.0 for d in delays)
    backoff.reset()
    assert backoff.next_delay_s() <= 0.1


async def test_every_outlives_a_stray_cancellation_but_not_a_real_one(caplog):
    # a CancelledError while nobody cancels the task: what a library's own timeout
    # handling can leak; the loop goes on, and still stops when it is cancelled
    outcomes = [asyncio.CancelledError(), None]
    went_on = asyncio.Event()

    async def step():
        outcome = outcomes.pop(0) if outcomes else None
        if outcome is not None:
            raise outcome
        went_on.set()

    task = asyncio.create_task(every(0.01, step, log, "test loop"))
    await asyncio.wait_for(went_on.wait(), 5)
    assert not task.done()
    task.cancel()
    await asyncio.wait([task], timeout=2)
    assert task.cancelled()
    assert any("test loop failed (CancelledError" in r.message for r in caplog.records)


async def test_the_feed_outlives_an_unexpected_error_and_resyncs(caplog):
    catalog = Catalog.load(Config.from_env({}).catalog_path)
    store = InventoryStore(fakeredis.FakeAsyncRedis(), catalog, 60)
    hub = LiveHub("unit")
    applied = hub.apply
    failures = [RuntimeError("a bug"), asyncio.CancelledError()]

    def apply_failing_twice(snapshot):
        if failures:
            raise failures.pop(0)
        return applied(snapshot)

    hub.apply = apply_failing_twice  # type: ignore[method-assign]
    feed = InventoryFeed(store.nodes, store, hub)
    task = asyncio.create_task(feed.run())
    await asyncio.wait_for(feed.subscribed.wait(), 5)  # the third resync went through
    assert not failures and feed.resyncs == 1
    assert all(hub.current(sku) is not None for sku in catalog.skus)
    task.cancel()
    await asyncio.wait([task], timeout=2)
    assert task.cancelled()
    unexpected = [r for r in caplog.records if "failed unexpectedly" in r.message]
    assert len(unexpected) == 2 and "a bug" in unexpected[0].exc_text
