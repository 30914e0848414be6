"""The ui scope: frames to a chat's sockets with resume, and inputs answered from any bus;
the same on every transport (across buses where the transport is remote)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from mozaiks_bus import InvalidEvent, SlowConsumer
from tests.contract.conftest import Backend

CHAT = "chat-1"


def kinds(frames: list[str]) -> list[Any]:
    return [json.loads(frame)["data"].get("content", json.loads(frame)["type"])
            for frame in frames]


async def take(stream: Any, count: int) -> list[str]:
    return [await asyncio.wait_for(stream.__anext__(), 5) for _ in range(count)]


async def next_frame(stream: Any) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(stream.__anext__(), 5))  # type: ignore[no-any-return]


async def test_kind_events_become_the_platform_envelope(backend: Backend) -> None:
    bus = backend.make_bus()
    async with bus:
        stream = await bus.ui.open(CHAT)
        first = await bus.ui.send(CHAT, {"kind": "text", "agent": "planner", "content": "hi"})
        await bus.ui.send(CHAT, {"kind": "print", "content": "p"})
        await bus.ui.send(CHAT, {"kind": "orchestration.run_started", "status": "in_progress"})
        await bus.ui.send(CHAT, {"type": "chat.custom", "data": {"x": 1}, "timestamp": "t0"})
        frames = [await next_frame(stream) for _ in range(4)]
        await stream.close()
    assert [f["type"] for f in frames] == [
        "chat.text", "chat.print", "chat.orchestration.run_started", "chat.custom"]
    assert frames[0]["id"] == first
    assert frames[0]["agent"] == "planner"
    assert [frames[0]["data"]["sequence"], frames[1]["data"]["sequence"]] == [1, 2]
    assert frames[1]["agent"] == "Agent"
    assert (frames[2]["data"]["run_id"], frames[2]["data"]["chat_id"]) == (CHAT, CHAT)
    assert frames[3] == {"type": "chat.custom", "data": {"x": 1}, "timestamp": "t0",
                         "agent": "Agent", "id": frames[3]["id"]}


async def test_resume_from_an_id_gets_exactly_what_came_after_then_live_frames(
    backend: Backend,
) -> None:
    bus = backend.make_bus()
    async with bus:
        ids = [await bus.ui.send(CHAT, {"kind": "text", "content": f"m{n}"}) for n in range(4)]
        async with await bus.ui.open(CHAT, last_event_id=ids[1]) as stream:
            missed = await take(stream, 2)
            await bus.ui.send(CHAT, {"kind": "text", "content": "live"})
            live = await take(stream, 1)
    assert kinds(missed) == ["m2", "m3"]
    assert [json.loads(frame)["id"] for frame in missed] == ids[2:]
    assert kinds(live) == ["live"]
    assert [json.loads(f)["data"]["sequence"] for f in missed + live] == [3, 4, 5]


async def test_a_new_client_starts_live_and_zero_replays_the_whole_history(
    backend: Backend,
) -> None:
    bus = backend.make_bus()
    async with bus:
        await bus.ui.send(CHAT, {"kind": "text", "content": "old"})
        async with await bus.ui.open(CHAT) as live, \
                await bus.ui.open(CHAT, last_event_id="0") as everything:
            await bus.ui.send(CHAT, {"type": "chat.tool_call", "data": {"tool": "t"}})
            assert kinds(await take(live, 1)) == ["chat.tool_call"]
            assert kinds(await take(everything, 2)) == ["old", "chat.tool_call"]


async def test_an_id_older_than_the_history_is_announced_never_silent(
    backend: Backend,
) -> None:
    bus = backend.make_bus(ui_history_max_len=2)
    async with bus:
        first = await bus.ui.send(CHAT, {"kind": "text", "content": "gone"})
        for n in range(300):  # Redis trims whole macro nodes (MAXLEN ~): push the first out
            await bus.ui.send(CHAT, {"kind": "text", "content": f"m{n}"})
        history_ids = [json.loads(f)["id"] for f in await take(
            await bus.ui.open(CHAT, last_event_id="0"), 1)]
        assert history_ids != [first]
        async with await bus.ui.open(CHAT, last_event_id=first) as stream:
            notice = json.loads((await take(stream, 1))[0])
    assert notice["type"] == "chat.resync_required"
    assert notice["data"]["last_event_id"] == first


async def test_a_client_that_stops_reading_is_cut_off_alone(backend: Backend) -> None:
    bus = backend.make_bus()
    async with bus:
        stalled = await bus.ui.open(CHAT, queue_size=3)
        reader = await bus.ui.open(CHAT, queue_size=100)
        for n in range(10):
            await bus.ui.send(CHAT, {"kind": "text", "content": f"m{n}"})
        # the reader first: once it has all ten, every frame was handed to both streams
        # (on a cluster a frame reaches the listener's node a moment after the send)
        assert kinds(await take(reader, 10)) == [f"m{n}" for n in range(10)]
        with pytest.raises(SlowConsumer):
            await take(stalled, 4)
        await stalled.close()
        await reader.close()


@pytest.mark.parametrize(("chat_id", "event", "field"), [
    (CHAT, {"nothing": 1}, "event"),
    (CHAT, {"kind": ""}, "event"),
    (CHAT, {"type": 3, "data": {}}, "event.type"),
    (CHAT, {"type": "chat.x", "data": "not an object"}, "event.type"),
    (CHAT, {"kind": "text", "when": object()}, "event"),
    ("", {"kind": "text"}, "chat_id"),
    ("x" * 300, {"kind": "text"}, "chat_id"),
])
async def test_a_bad_frame_is_refused_naming_the_field(
    backend: Backend, chat_id: str, event: dict[str, Any], field: str,
) -> None:
    bus = backend.make_bus()
    async with bus:
        with pytest.raises(InvalidEvent) as caught:
            await bus.ui.send(chat_id, event)
    assert caught.value.field == field


async def test_frames_sent_on_one_bus_reach_a_client_of_another(backend: Backend) -> None:
    backend.require("remote")
    sender, holder = backend.make_bus(), backend.make_bus()
    async with sender, holder:
        await sender.ui.send(CHAT, {"kind": "text", "content": "before"})
        async with await holder.ui.open(CHAT, last_event_id="0") as stream:
            await sender.ui.send(CHAT, {"kind": "text", "content": "after"})
            assert kinds(await take(stream, 2)) == ["before", "after"]


async def test_an_input_reaches_the_bus_that_asked_once_and_is_acked_to_the_chat(
    backend: Backend,
) -> None:
    asker = backend.make_bus()
    answerer = backend.make_bus() if backend.can.remote else asker
    answers: list[str] = []

    async def on_input(text: str) -> None:
        answers.append(text)

    async with asker:
        if answerer is not asker:
            await answerer.start()
        stream = await asker.ui.open(CHAT)
        request_id = asker.ui.register_input_request(CHAT, None, on_input)
        assert len(request_id) == 32  # no id given: a new one
        assert asker.ui.register_input_request(CHAT, 42, answers.append) == "42"
        await asyncio.sleep(0.2)  # claims are taken in the background
        assert await answerer.ui.submit_user_input(request_id, "yes") is True
        ack = await next_frame(stream)
        assert await answerer.ui.submit_user_input(request_id, "again") is False  # one-shot
        assert await answerer.ui.submit_user_input("unknown", "x") is False
        await stream.close()
        if answerer is not asker:
            await answerer.stop()
    assert answers == ["yes"]
    assert (ack["type"], ack["data"]["request_id"]) == ("chat.input_ack", request_id)


async def test_a_tool_response_reaches_the_waiting_bus_once(backend: Backend) -> None:
    waiter = backend.make_bus()
    responder = backend.make_bus() if backend.can.remote else waiter
    async with waiter:
        if responder is not waiter:
            await responder.start()
        waiting = asyncio.ensure_future(waiter.ui.wait_for_response("tool-1", timeout=5))
        await asyncio.sleep(0.2)
        assert await responder.ui.submit_response("tool-1", {"choice": "b"}) is True
        assert await waiting == {"choice": "b"}
        assert await responder.ui.submit_response("tool-1", {"choice": "c"}) is False
        with pytest.raises(TimeoutError):
            await waiter.ui.wait_for_response("tool-2", timeout=0.05)
        if responder is not waiter:
            await responder.stop()
