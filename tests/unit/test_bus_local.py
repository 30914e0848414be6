"""The in-process bus: Bus() with no broker."""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import UTC, datetime

import pytest

from mozaiks_bus import Bus, BusClosed, Event, InvalidEvent, load_settings


def test_no_broker_means_local_only() -> None:
    bus = Bus()
    assert bus.transport.remote is False
    assert bus.health()["transport"] == "local"


def test_sync_handler_runs_inline_exactly_once_with_the_same_dict() -> None:
    bus = Bus(service="svc")
    seen: list[Event] = []
    bus.subscribe("settings_updated", seen.append)
    data = {"user_id": "u1", "plugin": "p"}
    event = bus.emit("settings_updated", data)
    assert seen == [event]
    assert seen[0].data is data
    assert event.source == "svc"


def test_decorator_glob_patterns_and_subscription_order() -> None:
    bus = Bus()
    calls: list[str] = []

    @bus.subscribe("chat.*")
    def first(event: Event) -> None:
        calls.append(f"first:{event.type}")

    @bus.subscribe("*")
    def second(event: Event) -> None:
        calls.append(f"second:{event.type}")

    bus.emit("chat.text", {"content": "hi"})
    bus.emit("theme_changed", {"user_id": "u", "theme": "dark"})
    assert calls == ["first:chat.text", "second:chat.text", "second:theme_changed"]


def test_same_handler_twice_means_two_deliveries_and_unsubscribe_removes_one() -> None:
    bus = Bus()
    seen: list[Event] = []
    bus.subscribe("a.b", seen.append)
    bus.subscribe("a.b", seen.append)
    bus.emit("a.b")
    assert len(seen) == 2
    assert bus.unsubscribe("a.b", seen.append) is True
    bus.emit("a.b")
    assert len(seen) == 3
    assert bus.unsubscribe("a.b", seen.append) is True
    assert bus.unsubscribe("a.b", seen.append) is False


def test_a_failing_handler_never_stops_the_others(caplog: pytest.LogCaptureFixture) -> None:
    bus = Bus()
    seen: list[str] = []

    def broken(event: Event) -> None:
        raise RuntimeError("boom")

    bus.subscribe("a.b", broken)
    bus.subscribe("a.b", lambda e: seen.append(e.id))
    with caplog.at_level(logging.ERROR, logger="mozaiks_bus.local"):
        event = bus.emit("a.b")
    assert seen == [event.id]
    stats = bus.stats.snapshot()
    assert stats["failed"] == 1
    assert stats["delivered"] == 1
    assert "broken" in caplog.text
    assert event.id in caplog.text
    assert "boom" in caplog.text


async def test_async_handlers_run_in_order_and_publish_returns_the_event() -> None:
    got: list[int] = []
    done = asyncio.Event()

    async with Bus() as bus:

        @bus.subscribe("a.b")
        async def handler(event: Event) -> None:
            await asyncio.sleep(0)
            got.append(event.data["n"])
            if len(got) == 50:
                done.set()

        for n in range(25):
            bus.emit("a.b", {"n": n})
        for n in range(25, 50):
            event = await bus.publish("a.b", {"n": n})
            assert event.data == {"n": n}
        await asyncio.wait_for(done.wait(), 5)
    assert got == list(range(50))


def test_emit_from_sync_code_without_a_loop_runs_async_handlers_on_a_thread() -> None:
    bus = Bus()
    ran = threading.Event()
    threads: list[str] = []

    async def handler(event: Event) -> None:
        threads.append(threading.current_thread().name)
        ran.set()

    bus.subscribe("a.b", handler)
    bus.emit("a.b")
    assert ran.wait(5)
    assert threads == ["mozaiks-bus-loop"]
    asyncio.run(bus.stop())


async def test_async_handler_failures_are_isolated_and_counted() -> None:
    async with Bus() as bus:

        async def broken(event: Event) -> None:
            raise ValueError("nope")

        bus.subscribe("a.b", broken)
        bus.emit("a.b")
        bus.emit("a.b")
    assert bus.stats.snapshot()["failed"] == 2


async def test_slow_async_handler_is_bounded_by_its_queue_and_drops_oldest() -> None:
    bus = Bus(config=load_settings(subscriber_queue_size=10))
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
        bus.emit("a.b", {"n": n})
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
        ("settings_updated", {"plugin": "p"}, "data.user_id"),
        ("settings_updated", {"user_id": "u", "when": datetime.now(UTC)}, "data"),
        ("chat.usage_summary", {"chat_id": "c", "prompt_tokens": "many"}, "data"),
    ],
)
async def test_invalid_input_raises_invalid_event_in_emit_and_publish(
    type_name: str, data: dict[str, object], field: str
) -> None:
    bus = Bus()
    seen: list[Event] = []
    bus.subscribe("*", seen.append)
    with pytest.raises(InvalidEvent) as info:
        bus.emit(type_name, data)
    assert info.value.field.startswith(field)
    with pytest.raises(InvalidEvent):
        await bus.publish(type_name, data)
    assert seen == []
    assert bus.stats.snapshot()["published"] == 0


def test_local_only_types_carry_live_objects_but_refuse_remote_scopes() -> None:
    bus = Bus()
    live = object()
    seen: list[Event] = []
    bus.subscribe("chat.structured_output_ready", seen.append)
    bus.emit("chat.structured_output_ready", {"_pattern_context_ref": live})
    assert seen[0].data["_pattern_context_ref"] is live
    with pytest.raises(InvalidEvent, match="local-only"):
        bus.emit("chat.structured_output_ready", {}, durable=True)


def test_unknown_types_carry_any_json_object_and_stats_count_by_type() -> None:
    bus = Bus()
    bus.emit("orders.created", {"anything": [1, {"x": None}]})
    bus.emit("orders.created")
    stats = bus.stats.snapshot()
    assert stats["published"] == 2
    assert stats["by_type"] == {"orders.created": 2}


async def test_a_stopped_bus_refuses_work() -> None:
    bus = Bus()
    await bus.start()
    await bus.stop()
    with pytest.raises(BusClosed):
        bus.emit("a.b")
    with pytest.raises(BusClosed):
        await bus.publish("a.b")
    with pytest.raises(BusClosed):
        bus.subscribe("a.b", print)


async def test_stop_drains_queued_async_work() -> None:
    bus = Bus()
    await bus.start()
    got: list[int] = []

    async def handler(event: Event) -> None:
        await asyncio.sleep(0.001)
        got.append(event.data["n"])

    bus.subscribe("a.b", handler)
    for n in range(100):
        bus.emit("a.b", {"n": n})
    await bus.stop()
    assert got == list(range(100))
