"""``build_ui_event_payload`` on real AG2 event objects (ag2 0.10.4, no LLM, fixed uuids):
one test per kind, fields read from ``ev.content``, every payload JSON-safe."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from mozaiks_bus.ag2 import EventBuildContext, build_ui_event_payload

agent_events = pytest.importorskip("autogen.events.agent_events")
from autogen import ConversableAgent  # noqa: E402
from autogen.agentchat.group import AgentNameTarget, TerminateTarget  # noqa: E402
from autogen.agentchat.group.events import transition_events  # noqa: E402
from autogen.events.client_events import UsageSummaryEvent  # noqa: E402
from autogen.events.print_event import PrintEvent  # noqa: E402

U = uuid.UUID("00000000-0000-4000-8000-000000000001")


def payload(ev: Any, ctx: EventBuildContext | None = None) -> dict[str, Any]:
    built = build_ui_event_payload(ev, ctx)
    assert json.loads(json.dumps(built, allow_nan=False)) == built, "JSON-safe"
    assert built["event_type"] == type(ev).__name__
    return built


def test_text() -> None:
    ev = agent_events.TextEvent(uuid=U, content="hello", sender="planner", recipient="writer")
    assert payload(ev) == {"kind": "text", "agent": "planner", "recipient": "writer",
                           "content": "hello", "source": "ag2_textevent",
                           "event_type": "TextEvent"}


def test_text_multimodal_keeps_the_raw_content() -> None:
    parts = [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "u"}}]
    built = payload(agent_events.TextEvent(uuid=U, content=parts, sender="a", recipient="b"))
    assert built["content"] == "look"
    assert built["raw_content"] == parts


def test_print() -> None:
    built = payload(PrintEvent("step", {"n": 1}, sep=" | ", uuid=U),
                    EventBuildContext(turn_agent="planner"))
    assert (built["kind"], built["agent"], built["content"]) == \
        ("print", "planner", 'step | {"n": 1}')


def test_input_request() -> None:
    built = payload(agent_events.InputRequestEvent(uuid=U, prompt="Approve?", password=False),
                    EventBuildContext(turn_agent="user"))
    assert built == {"kind": "input_request", "agent": "user", "request_id": str(U),
                     "prompt": "Approve?", "password": False,
                     "event_type": "InputRequestEvent"}


def test_tool_call_then_its_response_are_matched_by_call_id() -> None:
    ctx = EventBuildContext()
    call = payload(agent_events.ToolCallEvent(
        uuid=U, sender="planner", recipient="chat_manager", tool_calls=[{
            "id": "call_1", "type": "function",
            "function": {"name": "lookup_weather", "arguments": '{"city": "Paris"}'}}]), ctx)
    assert (call["kind"], call["call_id"], call["name"], call["agent"], call["arguments"]) == \
        ("tool_call", "call_1", "lookup_weather", "planner", {"city": "Paris"})
    response = payload(agent_events.ToolResponseEvent(
        uuid=U, sender="_Group_Tool_Executor", recipient="chat_manager", content="sunny",
        tool_responses=[{"tool_call_id": "call_1", "role": "tool", "content": "sunny"}]), ctx)
    assert (response["kind"], response["call_id"], response["name"], response["agent"],
            response["result"], response["status"]) == \
        ("tool_response", "call_1", "lookup_weather", "planner", "sunny", "ok")


def test_a_tool_that_raised_gives_an_error_status() -> None:
    ctx = EventBuildContext()
    payload(agent_events.ExecutedFunctionEvent(
        uuid=U, func_name="lookup", call_id="call_2", arguments={}, recipient="executor",
        content="Error: no weather", is_exec_success=False), ctx)
    failed = payload(agent_events.ToolResponseEvent(
        uuid=U, sender="executor", recipient="planner", content="Error: no weather",
        tool_responses=[{"tool_call_id": "call_2", "role": "tool",
                         "content": "Error: no weather"}]), ctx)
    assert failed["status"] == "error"
    assert failed["responses"] == [{"call_id": "call_2", "result": "Error: no weather",
                                    "status": "error"}]
    # without its ExecutedFunctionEvent, AG2's "Error: " in place of a result says it
    alone = payload(agent_events.FunctionResponseEvent(
        uuid=U, sender="b", recipient="a", content="Error: Function f not found.", name="f"))
    assert alone["status"] == "error"
    # a tool that succeeded and returned text starting "Error: " is ok when AG2 says so
    payload(agent_events.ExecutedFunctionEvent(
        uuid=U, func_name="lookup", call_id="call_3", arguments={}, recipient="executor",
        content="Error: none", is_exec_success=True), ctx)
    fine = payload(agent_events.ToolResponseEvent(
        uuid=U, sender="executor", recipient="planner", content="Error: none",
        tool_responses=[{"tool_call_id": "call_3", "role": "tool", "content": "Error: none"}]),
        ctx)
    assert fine["status"] == "ok"


def test_function_call_and_response() -> None:
    call = payload(agent_events.FunctionCallEvent(
        uuid=U, sender="a", recipient="b", function_call={"name": "f", "arguments": "{}"}))
    assert (call["kind"], call["call_id"], call["name"], call["arguments"]) == \
        ("tool_call", None, "f", {})
    response = payload(agent_events.FunctionResponseEvent(
        uuid=U, sender="b", recipient="a", content="done", name="f"))
    assert (response["kind"], response["name"], response["result"]) == \
        ("tool_response", "f", "done")


@pytest.mark.parametrize(("cls", "handoff_type"), [
    ("AfterWorksTransitionEvent", "after_work"),
    ("OnContextConditionTransitionEvent", "context"),
    ("OnConditionLLMTransitionEvent", "llm"),
    ("ReplyResultTransitionEvent", "reply_result"),
])
def test_handoff(cls: str, handoff_type: str) -> None:
    source = ConversableAgent("planner", llm_config=False)
    ev = getattr(transition_events, cls)(source_agent=source,
                                         transition_target=AgentNameTarget("writer"))
    built = payload(ev)
    assert {k: built[k] for k in ("kind", "handoff_type", "agent", "source_agent", "target",
                                  "target_type")} == {
        "kind": "handoff", "handoff_type": handoff_type, "agent": "planner",
        "source_agent": "planner", "target": "writer", "target_type": "AgentNameTarget"}


def test_handoff_to_terminate() -> None:
    ev = transition_events.AfterWorksTransitionEvent(
        source_agent=ConversableAgent("writer", llm_config=False),
        transition_target=TerminateTarget())
    assert payload(ev)["target_type"] == "TerminateTarget"


def test_run_started_then_agent_started() -> None:
    ctx = EventBuildContext()
    first = payload(agent_events.GroupChatRunChatEvent(uuid=U, speaker="planner"), ctx)
    second = payload(agent_events.GroupChatRunChatEvent(uuid=U, speaker="writer"), ctx)
    assert (first["kind"], first["agent"], first["status"]) == \
        ("orchestration.run_started", "planner", "in_progress")
    assert (second["kind"], second["agent"], second["previous_agent"]) == \
        ("orchestration.agent_started", "writer", "planner")
    assert first["timestamp"].endswith("Z")
    assert not first["timestamp"].endswith("+00:00Z")
    assert ctx.turn_agent == "writer"


def test_select_speaker_lists_the_candidates() -> None:
    built = payload(agent_events.SelectSpeakerEvent(uuid=U, agents=["planner", "writer"]))
    assert (built["kind"], built["candidates"]) == \
        ("orchestration.agent_started", ["planner", "writer"])


def test_run_completed() -> None:
    cost = {"usage_including_cached_inference": {"total_cost": 0.2, "gpt-4o": {
        "cost": 0.2, "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}}
    built = payload(agent_events.RunCompletionEvent(
        uuid=U, summary="done", history=[], cost=cost, last_speaker="writer"))
    assert (built["kind"], built["status"], built["agent"], built["summary"],
            built["total_tokens"]) == ("orchestration.run_completed", "completed", "writer",
                                       "done", 15)


def test_run_failed_holds_the_error_as_text() -> None:
    built = payload(agent_events.ErrorEvent(uuid=U, error=ValueError("the tool broke")),
                    EventBuildContext(turn_agent="planner"))
    assert (built["kind"], built["status"], built["message"], built["error"],
            built["agent"]) == ("orchestration.run_failed", "failed", "the tool broke",
                                "ValueError", "planner")


def test_resume_boundary() -> None:
    built = payload(agent_events.GroupChatResumeEvent(
        uuid=U, last_speaker_name="writer", events=[{"content": "x"}, {"content": "y"}]))
    assert (built["kind"], built["agent"], built["message_count"]) == \
        ("resume_boundary", "writer", 2)


def test_usage_summary() -> None:
    usage = {"total_cost": 0.1, "gpt-4o": {"cost": 0.1, "prompt_tokens": 5,
                                           "completion_tokens": 3, "total_tokens": 8}}
    built = payload(UsageSummaryEvent(uuid=U, actual_usage_summary=usage,
                                      total_usage_summary=usage, mode="both"))
    assert built["kind"] == "usage_summary"
    assert built["usage"]["total"]["usages"][0]["total_tokens"] == 8


def test_unknown_events_keep_their_type_and_a_json_safe_dump() -> None:
    built = payload(agent_events.TerminationEvent(
        uuid=U, termination_reason="done", sender="chat_manager", recipient="user"))
    assert (built["kind"], built["raw_type"]) == ("unknown", "termination")
    assert built["data"]["termination_reason"] == "done"


def test_an_event_whose_own_json_dump_fails_still_serialises() -> None:
    ev = transition_events.AfterWorksTransitionEvent(
        source_agent=ConversableAgent("a", llm_config=False),
        transition_target=AgentNameTarget("b"))
    with pytest.raises(Exception):  # noqa: B017  # AG2's own dump fails: a live agent
        ev.model_dump_json()
    assert payload(ev)["kind"] == "handoff"
    assert payload(agent_events.ErrorEvent(uuid=U, error=RuntimeError(object())))["kind"] == \
        "orchestration.run_failed"
