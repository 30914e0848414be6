"""Local delivery in the publishing process: the same on every transport (a broker never
changes what this process's own subscribers get)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import pytest

from mozaiks_bus import Event, InvalidEvent
from tests.contract.conftest import Backend


async def test_a_sync_handler_runs_inline_exactly_once_with_the_callers_dict(
    backend: Backend,
) -> None:
    bus = backend.make_bus(service="svc")
    seen: list[Event] = []
    bus.subscribe("settings_updated", seen.append)
    data = {"user_id": "u1", "plugin": "p"}
    async with bus:
        event = bus.emit("settings_updated", data)
        assert seen == [event]  # before emit returned
        await asyncio.sleep(0.1)
    assert seen == [event]  # and never again (its own fan-out copy is skipped)
    assert seen[0].data is data
    assert event.source == "svc"


async def test_glob_patterns_match_and_handlers_run_in_subscription_order(
    backend: Backend,
) -> None:
    bus = backend.make_bus()
    calls: list[str] = []

    @bus.subscribe("chat.*")
    def first(event: Event) -> None:
        calls.append(f"first:{event.type}")

    @bus.subscribe("*")
    def second(event: Event) -> None:
        calls.append(f"second:{event.type}")

    async with bus:
        bus.emit("chat.text", {"content": "hi"})
        bus.emit("theme_changed", {"user_id": "u", "theme": "dark"})
    assert calls == ["first:chat.text", "second:chat.text", "second:theme_changed"]


async def test_the_same_handler_twice_means_two_deliveries_and_unsubscribe_removes_one(
    backend: Backend,
) -> None:
    bus = backend.make_bus()
    seen: list[Event] = []
    bus.subscribe("a.b", seen.append)
    bus.subscribe("a.b", seen.append)
    async with bus:
        bus.emit("a.b")
        assert len(seen) == 2
        assert bus.unsubscribe("a.b", seen.append) is True
        bus.emit("a.b")
        assert len(seen) == 3
        assert bus.unsubscribe("a.b", seen.append) is True
        assert bus.unsubscribe("a.b", seen.append) is False
        bus.emit("a.b")
    assert len(seen) == 3


async def test_a_failing_handler_never_stops_the_others_and_is_logged(
    backend: Backend, caplog: pytest.LogCaptureFixture,
) -> None:
    bus = backend.make_bus()
    seen: list[str] = []

    def broken(event: Event) -> None:
        raise RuntimeError("boom")

    bus.subscribe("a.b", broken)
    bus.subscribe("a.b", lambda e: seen.append(e.id))
    async with bus:
        with caplog.at_level(logging.ERROR, logger="mozaiks_bus.local"):
            event = bus.emit("a.b")
    assert seen == [event.id]
    stats = bus.stats.snapshot()
    assert (stats["failed"], stats["delivered"]) == (1, 1)
    assert "broken" in caplog.text
    assert event.id in caplog.text
    assert "boom" in caplog.text


async def test_async_handlers_run_in_order_for_emit_and_publish(backend: Backend) -> None:
    got: list[int] = []
    done = asyncio.Event()
    bus = backend.make_bus()

    @bus.subscribe("a.b")
    async def handler(event: Event) -> None:
        await asyncio.sleep(0)
        got.append(event.data["n"])
        if len(got) == 50:
            done.set()

    async with bus:
        for n in range(25):
            bus.emit("a.b", {"n": n})
        for n in range(25, 50):
            event = await bus.publish("a.b", {"n": n})
            assert event.data == {"n": n}
        await asyncio.wait_for(done.wait(), 5)
    assert got == list(range(50))


async def test_async_handler_failures_are_isolated_and_counted(backend: Backend) -> None:
    bus = backend.make_bus()

    async def broken(event: Event) -> None:
        raise ValueError("nope")

    bus.subscribe("a.b", broken)
    async with bus:
        bus.emit("a.b")
        bus.emit("a.b")
    assert bus.stats.snapshot()["failed"] == 2


async def test_a_slow_async_handler_is_bounded_by_its_queue_and_drops_the_oldest(
    backend: Backend,
) -> None:
    bus = backend.make_bus(subscriber_queue_size=10)
    release = asyncio.Event()
    got: list[int] = []
    max_queued = 0

    async def slow(event: Event) -> None:
        await release.wait()
        got.append(event.data["n"])

    await bus.start()
    bus.subscribe("a.b", slow)
    subscription = bus._local.subscriptions[0]
    for n in range(1000):
        bus.emit("a.b", {"n": n}, fanout=False)
        max_queued = max(max_queued, subscription.queued)
    assert max_queued <= 10
    release.set()
    await bus.stop()
    stats = bus.stats.snapshot()
    # One event was already taken by the handler; the queue kept the 10 newest.
    assert got[-10:] == list(range(990, 1000))
    assert stats["dropped_local"] == 1000 - len(got)
    assert stats["delivered"] == len(got)


@pytest.mark.parametrize(
    ("type_name", "data", "field"),
    [
        ("Bad Type", {}, "type"),
        ("a..b", {}, "type"),
        ("settings_updated", {"plugin": "p"}, "data.user_id"),
        ("settings_updated", {"user_id": "u", "when": datetime.now(UTC)}, "data"),
        ("chat.usage_summary", {"chat_id": "c", "prompt_tokens": "many"}, "data"),
    ],
)
async def test_invalid_input_raises_invalid_event_in_emit_and_publish_and_reaches_no_one(
    backend: Backend, type_name: str, data: dict[str, object], field: str,
) -> None:
    bus = backend.make_bus()
    seen: list[Event] = []
    bus.subscribe("*", seen.append)
    async with bus:
        with pytest.raises(InvalidEvent) as info:
            bus.emit(type_name, data)
        assert info.value.field.startswith(field)
        with pytest.raises(InvalidEvent):
            await bus.publish(type_name, data)
    assert seen == []
    assert bus.stats.snapshot()["published"] == 0
