"""The dispatcher's gathering of a sink's events into batches (no Redis needed)."""

from __future__ import annotations

import asyncio

import pytest

from mozaiks_bus.event import Event
from mozaiks_bus.settings.sinks import SinkConfig
from mozaiks_bus.sinks.batching import DeliveryBatcher, batch_timeout


def events(count: int) -> list[Event]:
    return [Event.create("orders.created", {"n": n}) for n in range(count)]


async def test_a_full_batch_goes_at_once_and_the_rest_after_the_linger() -> None:
    flushed: list[list[int]] = []

    async def flush(batch: list[Event]) -> None:
        flushed.append([event.data["n"] for event in batch])

    batcher = DeliveryBatcher(flush, max_size=3, linger_s=0.05)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(*(batcher.add(event) for event in events(5)))
    assert flushed == [[0, 1, 2], [3, 4]]
    assert loop.time() - started >= 0.045  # the last two waited for the linger


async def test_every_waiter_of_a_batch_that_failed_to_store_gets_the_error() -> None:
    async def flush(batch: list[Event]) -> None:
        raise ConnectionError("Redis is down")

    batcher = DeliveryBatcher(flush, max_size=2, linger_s=0.01)
    results = await asyncio.gather(*(batcher.add(event) for event in events(3)),
                                   return_exceptions=True)
    assert [type(result) for result in results] == [ConnectionError] * 3


def test_a_batch_may_take_as_long_as_its_rounds_of_concurrent_requests() -> None:
    sink = SinkConfig(name="s", url="http://127.0.0.1:9/x", patterns=["a.b"], timeout_s=5.0,
                      batch_concurrency=16)
    assert batch_timeout(sink, 16) == 5 * 2 + 30
    assert batch_timeout(sink, 17) == 2 * 5 * 2 + 30


@pytest.mark.parametrize(("field", "value"), [("batch_max", 0), ("batch_max", 501),
                                              ("batch_concurrency", 65),
                                              ("batch_linger_ms", -1.0)])
def test_batch_settings_outside_their_range_are_refused_by_name(field: str,
                                                                value: float) -> None:
    with pytest.raises(ValueError, match=field):
        SinkConfig(name="s", url="http://127.0.0.1:9/x", patterns=["a.b"],
                   **{field: value})  # type: ignore[arg-type]
