"""The sender's one timer for every bounded publish in flight."""

from __future__ import annotations

import asyncio

import pytest

from mozaiks_bus.transports.redis.deadlines import SharedDeadline


async def test_each_watched_future_fails_after_the_timeout_unless_it_finished() -> None:
    deadline = SharedDeadline(0.2)
    loop = asyncio.get_running_loop()
    first, second, answered = (loop.create_future() for _ in range(3))
    started = loop.time()
    deadline.watch(first)
    await asyncio.sleep(0.1)
    deadline.watch(answered)
    deadline.watch(second)
    answered.set_result("stored")
    with pytest.raises(TimeoutError):
        await first
    first_at = loop.time() - started
    assert not second.done()  # watched 0.1 s later: its own clock, not the first's
    with pytest.raises(TimeoutError):
        await second
    second_at = loop.time() - started
    assert 0.19 <= first_at < 0.29
    assert 0.29 <= second_at < 0.45
    assert answered.result() == "stored"


async def test_cancel_stops_the_timer_and_leaves_the_futures_alone() -> None:
    deadline = SharedDeadline(0.05)
    future = asyncio.get_running_loop().create_future()
    deadline.watch(future)
    deadline.cancel()
    await asyncio.sleep(0.1)
    assert not future.done()
    deadline.watch(future)  # usable again after a cancel
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(future, 1.0)


async def test_answered_futures_are_not_held_until_their_deadline() -> None:
    """At 40,000 publishes a second and a 5 s timeout, holding every answered future
    until its deadline would keep 200,000 of them alive."""
    deadline = SharedDeadline(60.0)
    loop = asyncio.get_running_loop()
    for _ in range(1000):
        future = loop.create_future()
        deadline.watch(future)
        future.set_result(None)
    assert deadline.watched <= 1
    deadline.cancel()
