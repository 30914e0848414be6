"""A real AG2 group chat (fixed-reply agents, no LLM, no network) through the bus.

The run happens in this process (``forward_run`` over ``a_run_group_chat``); the browser
is a WebSocket client on a separate ``mozaiks-bus serve`` process. It gets every frame in
order, drops its connection mid-run and resumes with its last id, answers the input
request over its socket, and the run completes; ``chat.run_complete`` reaches a durable
consumer once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets

from mozaiks_bus import Event
from mozaiks_bus.ag2 import forward_run
from tests.integration.server_harness import UI, ServeProcess
from tests.support import make_bus, wait_for

pytestmark = pytest.mark.integration

autogen = pytest.importorskip("autogen")
from autogen import ConversableAgent  # noqa: E402
from autogen.agentchat import a_run_group_chat  # noqa: E402
from autogen.agentchat.group import AgentTarget, TerminateTarget  # noqa: E402
from autogen.agentchat.group.patterns import DefaultPattern  # noqa: E402


def lookup_weather(city: str) -> str:
    """The weather of a city (the tool the planner calls)."""
    return f"sunny in {city}"


def fixed(reply: Any) -> Any:
    def answer(recipient: Any, messages: Any = None, sender: Any = None,
               config: Any = None) -> tuple[bool, Any]:
        return True, reply() if callable(reply) else reply
    return answer


def trip_planning_chat() -> DefaultPattern:
    """planner (a tool call, then a plan) -> executor -> writer -> user (asked for input)
    -> terminate; every step is an after-work handoff."""
    planner = ConversableAgent("planner", llm_config=False, human_input_mode="NEVER")
    executor = ConversableAgent("executor", llm_config=False, human_input_mode="NEVER",
                                function_map={"lookup_weather": lookup_weather})
    writer = ConversableAgent("writer", llm_config=False, human_input_mode="NEVER")
    user = ConversableAgent("user", llm_config=False, human_input_mode="ALWAYS")
    turns = iter([
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_1", "type": "function",
            "function": {"name": "lookup_weather", "arguments": json.dumps({"city": "Paris"})},
        }]},
        "Plan: Paris, it is sunny.",
    ])
    planner.register_reply([ConversableAgent, None], fixed(lambda: next(turns)), position=0)
    writer.register_reply([ConversableAgent, None], fixed("Draft written."), position=0)
    planner.handoffs.set_after_work(AgentTarget(executor))
    executor.handoffs.set_after_work(AgentTarget(writer))
    writer.handoffs.set_after_work(AgentTarget(user))
    user.handoffs.set_after_work(TerminateTarget())
    return DefaultPattern(initial_agent=planner, agents=[planner, executor, writer, user],
                          group_manager_args={"llm_config": False})


@contextlib.asynccontextmanager
async def watching(bus: Any, chat: str) -> AsyncIterator[list[dict[str, Any]]]:
    """Every frame of ``chat`` from now on, collected in a list while the block runs."""
    frames: list[dict[str, Any]] = []
    async with await bus.ui.open(chat, last_event_id=None) as stream:

        async def collect() -> None:
            async for frame in stream:
                frames.append(json.loads(frame))

        reader = asyncio.create_task(collect())
        try:
            yield frames
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)


async def read_frames(socket: Any, until: Any, frames: list[dict[str, Any]]) -> None:
    while True:
        frame = json.loads(await asyncio.wait_for(socket.recv(), 20))
        if "id" in frame:
            frames.append(frame)
        if until(frame):
            return


async def test_a_group_chat_reaches_a_browser_on_another_worker_with_resume_and_input(
    redis_url: str, key_prefix: str,
) -> None:
    chat = f"chat-{uuid.uuid4().hex[:8]}"
    server = ServeProcess(redis_url, key_prefix).start()
    runtime = make_bus(redis_url, key_prefix)
    completions: list[Event] = []
    billing = make_bus(redis_url, key_prefix)
    billing.consumer("chat.run_complete", group="billing")(completions.append)
    try:
        await asyncio.to_thread(server.wait_ready)
        async with runtime, billing:
            url = f"{server.ws_url}/v1/ws/{chat}?token={UI}"
            frames: list[dict[str, Any]] = []
            first = await websockets.connect(url)  # live from here on
            run = asyncio.create_task(forward_run(
                await a_run_group_chat(pattern=trip_planning_chat(), messages="Plan a trip",
                                       max_rounds=20),
                runtime, chat, app_id="app-1", user_id="user-1", workflow_name="trips"))
            await read_frames(first, lambda f: f.get("type") == "chat.tool_call", frames)
            await first.close()  # the browser drops mid-run...
            await asyncio.sleep(0.3)  # ...while the run goes on
            last = frames[-1]["id"]
            second = await websockets.connect(f"{url}&last_event_id={last}")
            await read_frames(second, lambda f: f.get("type") == "chat.input_request", frames)
            request = frames[-1]["data"]
            await second.send(json.dumps({"type": "user.input.submit",
                                          "input_request_id": request["request_id"],
                                          "text": "approved"}))
            await read_frames(second, lambda f: f.get("type") == "chat.run_complete", frames)
            await second.close()
            outcome = await asyncio.wait_for(run, 20)
            await wait_for(lambda: completions, 10, "chat.run_complete at the consumer")
            await asyncio.sleep(1.0)  # a second delivery would show by now
    finally:
        await asyncio.to_thread(server.stop)
    assert outcome.status == "completed", outcome.error
    from_the_bus = ("chat.input_ack", "chat.usage_summary", "chat.run_complete")
    received = [frame["id"] for frame in frames if frame["type"] not in from_the_bus]
    assert received == outcome.frames, "every frame of the run, in order, none twice"
    assert [f["type"] for f in frames][-2:] == ["chat.usage_summary", "chat.run_complete"]
    kinds = [frame["type"] for frame in frames]
    for expected in ("chat.text", "chat.orchestration.run_started", "chat.tool_call",
                     "chat.tool_response", "chat.handoff", "chat.input_request",
                     "chat.input_ack", "chat.orchestration.run_completed"):
        assert expected in kinds, f"{expected} missing from {kinds}"
    call = next(f["data"] for f in frames if f["type"] == "chat.tool_call")
    response = next(f["data"] for f in frames if f["type"] == "chat.tool_response")
    assert (call["name"], call["arguments"], call["agent"]) == \
        ("lookup_weather", {"city": "Paris"}, "planner")
    assert (response["call_id"], response["result"], response["agent"]) == \
        ("call_1", "sunny in Paris", "planner")
    handoffs = [(f["data"]["source_agent"], f["data"]["target"]) for f in frames
                if f["type"] == "chat.handoff"]
    assert ("planner", "executor") in handoffs
    assert ("user", "Terminate") in handoffs
    approved = [f for f in frames if f["type"] == "chat.text"
                and f["data"]["content"] == "approved"]
    assert approved[0]["data"]["agent"] == "user", "the answer reached the run"
    [complete] = completions
    assert complete.data["chat_id"] == chat
    assert complete.data["status"] == "completed"


async def test_a_failing_run_ends_with_run_failed_after_the_frames_before_it(
    redis_url: str, key_prefix: str,
) -> None:
    chat = f"chat-{uuid.uuid4().hex[:8]}"
    planner = ConversableAgent("planner", llm_config=False, human_input_mode="NEVER")
    writer = ConversableAgent("writer", llm_config=False, human_input_mode="NEVER")

    def broken(*_args: Any, **_kwargs: Any) -> tuple[bool, Any]:
        raise RuntimeError("the writer's model is down")

    planner.register_reply([ConversableAgent, None], fixed("Plan ready."), position=0)
    writer.register_reply([ConversableAgent, None], broken, position=0)
    planner.handoffs.set_after_work(AgentTarget(writer))
    pattern = DefaultPattern(initial_agent=planner, agents=[planner, writer],
                             group_manager_args={"llm_config": False})
    bus = make_bus(redis_url, key_prefix)
    async with bus, watching(bus, chat) as frames:
        outcome = await forward_run(await a_run_group_chat(
            pattern=pattern, messages="Go", max_rounds=5), bus, chat)
        # the run's frames, then chat.run_complete (durable, and routed to the chat too)
        await wait_for(lambda: len(frames) == len(outcome.frames) + 1, 10, "every frame")
    assert outcome.status == "failed"
    assert "the writer's model is down" in str(outcome.error)
    kinds = [frame["type"] for frame in frames]
    assert kinds[-2:] == ["chat.orchestration.run_failed", "chat.run_complete"]
    assert frames[-1]["data"]["status"] == "failed"
    assert kinds.count("chat.orchestration.run_failed") == 1
    assert any(f["type"] == "chat.text" and f["data"]["content"] == "Plan ready."
               for f in frames), "the frames before the failure were sent"


async def test_a_sync_run_is_read_off_the_loop_and_forwarded_in_order(
    redis_url: str, key_prefix: str,
) -> None:
    """``agent.run(...)`` (a RunResponse whose iterator blocks) works the same."""
    chat = f"chat-{uuid.uuid4().hex[:8]}"
    alice = ConversableAgent("alice", llm_config=False, human_input_mode="NEVER")
    bob = ConversableAgent("bob", llm_config=False, human_input_mode="NEVER")
    bob.register_reply([ConversableAgent, None], fixed("hi alice"), position=0)
    bus = make_bus(redis_url, key_prefix)
    async with bus, watching(bus, chat) as frames:
        ticks = 0

        async def tick() -> None:  # the loop stays free while the run's thread blocks
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        outcome = await forward_run(alice.run(bob, message="hello bob", max_turns=1),
                                    bus, chat)
        ticker.cancel()
        await wait_for(lambda: len(frames) == len(outcome.frames) + 1, 10, "every frame")
    assert outcome.status == "completed"
    texts = [(f["data"]["agent"], f["data"]["content"]) for f in frames
             if f["type"] == "chat.text"]
    assert texts == [("alice", "hello bob"), ("bob", "hi alice")]
    assert [f["id"] for f in frames[:-1]] == outcome.frames
    assert ticks > 0
