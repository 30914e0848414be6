"""``forward_run`` when the UI cannot be reached: real AG2 runs (fixed replies, no LLM)
on a ``memory://`` bus whose ``bus.ui.send`` fails as it does while Redis is away."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from mozaiks_bus import Bus
from mozaiks_bus.ag2 import build_ui_event_payload, forward_run
from mozaiks_bus.ag2.payloads import EventBuildContext
from mozaiks_bus.errors import BrokerUnavailable, ConfigError
from tests.support import make_bus

autogen = pytest.importorskip("autogen")
from autogen import ConversableAgent  # noqa: E402


def fixed(reply: Any) -> Any:
    def answer(recipient: Any, messages: Any = None, sender: Any = None,
               config: Any = None) -> tuple[bool, Any]:
        return True, reply() if callable(reply) else reply
    return answer


def chat_of(rounds: int) -> tuple[ConversableAgent, ConversableAgent]:
    alice = ConversableAgent("alice", llm_config=False, human_input_mode="NEVER")
    bob = ConversableAgent("bob", llm_config=False, human_input_mode="NEVER")
    count = iter(range(rounds * 2))
    alice.register_reply([ConversableAgent, None], fixed(lambda: f"a{next(count)}"), position=0)
    bob.register_reply([ConversableAgent, None], fixed(lambda: f"b{next(count)}"), position=0)
    return alice, bob


@pytest.fixture
async def bus(memory_url: str) -> AsyncIterator[Bus]:
    the_bus = make_bus(memory_url, "ag2")
    async with the_bus:
        yield the_bus


def ui_away(bus: Bus, monkeypatch: pytest.MonkeyPatch,
            away: Callable[[], bool]) -> list[dict[str, Any]]:
    """``bus.ui.send`` raises BrokerUnavailable while ``away()``; returns what it sent."""
    real: Callable[[str, dict[str, Any]], Awaitable[str]] = bus.ui.send
    sent: list[dict[str, Any]] = []

    async def send(chat_id: str, payload: dict[str, Any]) -> str:
        if away():
            raise BrokerUnavailable("Redis is away (test)")
        frame_id = await real(chat_id, payload)
        sent.append(payload)
        return frame_id

    monkeypatch.setattr(bus.ui, "send", send)
    return sent


async def history(bus: Bus, chat: str, count: int) -> list[dict[str, Any]]:
    """The chat's first ``count`` frames, from its history (bounded wait)."""
    frames: list[dict[str, Any]] = []

    async def read() -> None:
        async with await bus.ui.open(chat, last_event_id="0") as stream:
            async for frame in stream:
                frames.append(json.loads(frame))
                if len(frames) == count:
                    return

    await asyncio.wait_for(read(), 10)
    return frames


@pytest.mark.slow
async def test_a_run_whose_ui_is_away_for_10s_completes_and_every_frame_goes_out_in_order(
    bus: Bus, monkeypatch: pytest.MonkeyPatch,
) -> None:
    chat = f"chat-{uuid.uuid4().hex[:8]}"
    until = time.monotonic() + 10.0
    sent = ui_away(bus, monkeypatch, lambda: time.monotonic() < until)
    alice, bob = chat_of(3)
    outcome = await forward_run(alice.run(bob, message="hello", max_turns=3), bus, chat,
                                max_pending_frames=4)  # the run waits for the UI too
    assert time.monotonic() >= until, "the frames waited out the outage"
    assert (outcome.status, outcome.error, outcome.frames_dropped) == ("completed", None, 0)
    assert outcome.results_published
    texts = [p["content"] for p in sent if p["kind"] == "text"]
    assert texts == ["hello", "b0", "a1", "b2", "a3", "b4"]
    frames = await history(bus, chat, len(outcome.frames))
    assert [f["id"] for f in frames] == outcome.frames


async def test_a_ui_away_for_longer_than_ui_outage_s_stops_the_run_and_returns(
    bus: Bus, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nobody can answer the run's input request: it is answered "exit" and the run ends;
    the failure is returned, not raised, and the run's end is still published."""
    chat = f"chat-{uuid.uuid4().hex[:8]}"
    ui_away(bus, monkeypatch, lambda: True)
    assistant = ConversableAgent("assistant", llm_config=False, human_input_mode="NEVER")
    assistant.register_reply([ConversableAgent, None], fixed("what next?"), position=0)
    user = ConversableAgent("user", llm_config=False, human_input_mode="ALWAYS")
    completed: list[Any] = []
    bus.subscribe("chat.run_complete", completed.append)
    outcome = await forward_run(user.run(assistant, message="hi", max_turns=50), bus, chat,
                                ui_outage_s=0.3)
    assert outcome.status == "failed"
    assert isinstance(outcome.error, BrokerUnavailable)
    assert outcome.frames == []
    assert outcome.frames_dropped > 0
    assert outcome.results_published
    assert [event.data["status"] for event in completed] == ["failed"]


async def test_a_failing_run_whose_run_failed_frame_cannot_be_sent_returns_its_error(
    bus: Bus, monkeypatch: pytest.MonkeyPatch,
) -> None:
    chat = f"chat-{uuid.uuid4().hex[:8]}"
    ui_away(bus, monkeypatch, lambda: True)
    alice = ConversableAgent("alice", llm_config=False, human_input_mode="NEVER")
    bob = ConversableAgent("bob", llm_config=False, human_input_mode="NEVER")

    def broken(*_args: Any, **_kwargs: Any) -> tuple[bool, Any]:
        raise RuntimeError("bob's model is down")

    bob.register_reply([ConversableAgent, None], broken, position=0)
    outcome = await forward_run(alice.run(bob, message="hi", max_turns=2), bus, chat,
                                ui_outage_s=0.2)
    assert outcome.status == "failed"
    assert "bob's model is down" in str(outcome.error)
    assert outcome.frames == []


def test_a_tool_that_raises_gives_an_error_status_in_a_real_run() -> None:
    def lookup(city: str) -> str:
        if city == "Atlantis":
            raise RuntimeError(f"no weather for {city}")
        return f"sunny in {city}"

    planner = ConversableAgent("planner", llm_config=False, human_input_mode="NEVER")
    executor = ConversableAgent("executor", llm_config=False, human_input_mode="NEVER",
                                function_map={"lookup": lookup})
    turns = iter([{"role": "assistant", "content": None, "tool_calls": [{
        "id": f"call_{city}", "type": "function",
        "function": {"name": "lookup", "arguments": json.dumps({"city": city})}}]}
        for city in ("Paris", "Atlantis")])
    planner.register_reply([ConversableAgent, None], fixed(lambda: next(turns)), position=0)
    ctx = EventBuildContext()
    payloads = [build_ui_event_payload(event, ctx) for event in
                planner.run(executor, message="go", max_turns=3).events]
    responses = [p for p in payloads if p["kind"] == "tool_response"]
    assert [(r["call_id"], r["status"]) for r in responses] == [
        ("call_Paris", "ok"), ("call_Atlantis", "error")]
    assert responses[1]["responses"][0]["status"] == "error"
    assert "no weather for Atlantis" in responses[1]["result"]


@pytest.mark.parametrize(("name", "value"), [("max_pending_frames", 0),
                                             ("ui_outage_s", -1.0)])
async def test_bad_outage_bounds_name_the_argument(bus: Bus, name: str, value: Any) -> None:
    alice, bob = chat_of(1)
    with pytest.raises(ConfigError) as caught:
        await forward_run(alice.run(bob, message="hi", max_turns=1), bus, "chat-x",
                          **{name: value})
    assert caught.value.field == name
