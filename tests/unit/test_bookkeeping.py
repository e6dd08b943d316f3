"""Bookkeeping after a made change never fails the answer, nor holds it past a short wait."""

import asyncio
import logging

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from service.inventory.bookkeeping import Bookkeeping

pytestmark = pytest.mark.timeout(10)


async def test_a_step_that_hangs_releases_the_answer_and_finishes_on_its_own():
    bookkeeping = Bookkeeping(wait_s=0.01)
    node_answers, finished = asyncio.Event(), []

    async def step_on_a_silent_node():  # as when its shard's machine is gone
        await node_answers.wait()
        finished.append(True)

    await asyncio.wait_for(bookkeeping.after_change((step_on_a_silent_node(), "a step")), 2)
    assert finished == [] and len(bookkeeping.pending) == 1  # the answer went without it
    node_answers.set()
    await asyncio.wait_for(asyncio.gather(*bookkeeping.pending), 2)
    assert finished == [True] and not bookkeeping.pending


async def test_a_quick_step_is_done_before_the_answer():
    bookkeeping, done = Bookkeeping(), []

    async def step():
        done.append(True)

    await bookkeeping.after_change((step(), "a step"))
    assert done == [True] and not bookkeeping.pending


async def test_a_failing_step_is_logged_with_its_safety_net_and_not_raised(caplog):
    bookkeeping = Bookkeeping()

    async def step():
        raise RedisConnectionError("Error 111 connecting")

    with caplog.at_level(logging.WARNING):
        await bookkeeping.after_change((step(), "indexing (the slices find it)"))
    assert "indexing (the slices find it) failed after the change was made" in caplog.text


async def test_a_late_failure_is_logged_too(caplog):
    bookkeeping, release = Bookkeeping(wait_s=0.01), asyncio.Event()

    async def step():
        await release.wait()
        raise RedisConnectionError("Timeout connecting to server")

    with caplog.at_level(logging.WARNING):
        await bookkeeping.after_change((step(), "settling the count"))
        assert "failed" not in caplog.text
        release.set()
        await asyncio.wait_for(asyncio.gather(*bookkeeping.pending), 2)
    assert "settling the count failed after the change was made" in caplog.text
