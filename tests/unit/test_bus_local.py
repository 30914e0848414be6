"""What only the broker-less bus does (every transport's shared behaviour is in
``tests/contract/``): local-only routes, the loop thread for sync callers, stop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from mozaiks_bus import Bus, BusClosed, Event, InvalidEvent


def test_no_broker_means_local_only() -> None:
    bus = Bus()
    assert bus.transport.remote is False
    assert bus.health()["transport"] == "local"







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
