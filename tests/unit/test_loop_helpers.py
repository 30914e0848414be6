"""The loop helpers stop() paths rely on: a task that swallows a cancellation still ends."""

from __future__ import annotations

import asyncio

from mozaiks_bus._loop import cancel_and_wait, wait_set


async def test_cancel_and_wait_ends_a_task_that_swallowed_the_first_cancel() -> None:
    swallowed = 0

    async def stubborn() -> None:  # as a library (or 3.11's wait_for) may do, once
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                swallowed += 1
                if swallowed > 1:
                    raise

    async def failing() -> None:
        raise ValueError("boom")

    tasks = [asyncio.create_task(stubborn()), asyncio.create_task(failing())]
    await asyncio.sleep(0)
    assert await asyncio.wait_for(cancel_and_wait(tasks, every_s=0.05), 5) == []
    assert swallowed == 2
    assert all(task.done() for task in tasks)


async def test_wait_set() -> None:
    event = asyncio.Event()
    assert await wait_set(event, 0.01) is False
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wait_set(event, 5) is True
