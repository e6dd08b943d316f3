"""Background loops stop when cancelled, even if a library swallows the cancellation."""

import asyncio
import logging

import pytest

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
