"""bus.ui without a broker: frames, resume and inputs within one process."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from mozaiks_bus import Bus, InvalidEvent
from mozaiks_bus.ui import SlowConsumer


async def next_frame(stream: Any) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(stream.__anext__(), 2))  # type: ignore[no-any-return]


async def test_kind_events_become_the_platform_envelope() -> None:
    bus = Bus()
    stream = await bus.ui.open("chat-1")
    first = await bus.ui.send("chat-1", {"kind": "text", "agent": "planner", "content": "hi"})
    await bus.ui.send("chat-1", {"kind": "print", "content": "p"})
    await bus.ui.send("chat-1", {"kind": "orchestration.run_started", "status": "in_progress"})
    await bus.ui.send("chat-1", {"type": "chat.custom", "data": {"x": 1}, "timestamp": "t0"})
    frames = [await next_frame(stream) for _ in range(4)]
    assert [f["type"] for f in frames] == [
        "chat.text", "chat.print", "chat.orchestration.run_started", "chat.custom"]
    assert frames[0]["id"] == first
    assert frames[0]["agent"] == "planner"
    assert frames[0]["data"]["sequence"] == 1
    assert frames[1]["data"]["sequence"] == 2
    assert frames[1]["agent"] == "Agent"
    assert frames[2]["data"]["run_id"] == "chat-1"
    assert frames[2]["data"]["chat_id"] == "chat-1"
    assert frames[3] == {"type": "chat.custom", "data": {"x": 1}, "timestamp": "t0",
                         "agent": "Agent", "id": frames[3]["id"]}
    await stream.close()


async def test_resume_replays_what_was_missed_then_goes_live() -> None:
    bus = Bus()
    ids = [await bus.ui.send("c", {"kind": "text", "content": str(n)}) for n in range(5)]
    stream = await bus.ui.open("c", last_event_id=ids[1])
    await bus.ui.send("c", {"kind": "text", "content": "5"})
    got = [(await next_frame(stream))["data"]["content"] for _ in range(4)]
    assert got == ["2", "3", "4", "5"]
    everything = await bus.ui.open("c", last_event_id="0")
    assert [(await next_frame(everything))["data"]["content"] for _ in range(6)] == [
        "0", "1", "2", "3", "4", "5"]


async def test_an_id_no_longer_in_history_asks_the_client_to_resync() -> None:
    bus = Bus()
    await bus.ui.send("c", {"kind": "text", "content": "new"})
    stream = await bus.ui.open("c", last_event_id="1-0")
    notice = await next_frame(stream)
    assert notice["type"] == "chat.resync_required"
    assert notice["data"]["last_event_id"] == "1-0"
    assert (await next_frame(stream))["data"]["content"] == "new"


async def test_a_client_that_stops_reading_overflows_alone() -> None:
    bus = Bus()
    slow = await bus.ui.open("c", queue_size=5)
    fast = await bus.ui.open("c", queue_size=100)
    for n in range(20):
        await bus.ui.send("c", {"kind": "text", "content": str(n)})
    with pytest.raises(SlowConsumer):
        async for _ in slow:
            pass
    assert [(await next_frame(fast))["data"]["content"] for _ in range(20)] == [
        str(n) for n in range(20)]


async def test_input_requests_are_one_shot_and_acked_to_the_chat() -> None:
    bus = Bus()
    stream = await bus.ui.open("c")
    got: list[str] = []

    async def on_input(text: str) -> None:
        got.append(text)

    rid = bus.ui.register_input_request("c", None, on_input)
    assert len(rid) == 32
    assert bus.ui.register_input_request("c", 42, got.append) == "42"
    assert await bus.ui.submit_user_input(rid, "yes") is True
    assert await bus.ui.submit_user_input(rid, "again") is False
    assert await bus.ui.submit_user_input("unknown", "x") is False
    assert got == ["yes"]
    ack = await next_frame(stream)
    assert ack["type"] == "chat.input_ack"
    assert ack["data"]["request_id"] == rid


async def test_ui_tool_responses_reach_the_waiter_once() -> None:
    bus = Bus()
    waiter = asyncio.create_task(bus.ui.wait_for_response("tool-1", timeout=2))
    await asyncio.sleep(0)
    assert await bus.ui.submit_response("tool-1", {"choice": "b"}) is True
    assert await waiter == {"choice": "b"}
    assert await bus.ui.submit_response("tool-1", {"choice": "c"}) is False
    with pytest.raises(TimeoutError):
        await bus.ui.wait_for_response("tool-2", timeout=0.05)


@pytest.mark.parametrize(
    ("chat_id", "event", "field"),
    [
        ("c", {"nothing": 1}, "event"),
        ("c", {"kind": ""}, "event"),
        ("c", {"type": 3, "data": {}}, "event.type"),
        ("c", {"kind": "text", "when": object()}, "event"),
        ("", {"kind": "text"}, "chat_id"),
        ("x" * 300, {"kind": "text"}, "chat_id"),
    ],
)
async def test_bad_frames_are_rejected_naming_the_field(
    chat_id: str, event: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidEvent) as info:
        await Bus().ui.send(chat_id, event)
    assert info.value.field == field
