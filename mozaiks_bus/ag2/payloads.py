"""AG2 events as the platform's UI payloads: ``build_ui_event_payload(ev, ctx=None)``.

The payloads keep the platform's kinds and field names but read the **real** AG2
fields: every AG2 event the run yields is a wrapper with ``type`` and ``content`` (the
original event), so the sender is ``ev.content.sender``, a tool call's id
``ev.content.tool_calls[0].id`` and so on (the platform's own mapping reads them off the
wrapper and gets ``None``). The class is recognised by name, so this module imports no
AG2 code and works with every classic release (0.10.2 to 0.14).

Every payload has ``kind`` and ``event_type`` (the AG2 class name) and is JSON-safe
whatever the event holds (an exception, a live agent, a pydantic model, bytes...):
values that JSON cannot hold become their ``str()``; nothing raises for an odd event.

Decisions where the platform and AG2 disagree:

* ``GroupChatRunChatEvent`` is AG2's "next speaker", sent every turn. The first one of
  a run (per :class:`EventBuildContext`) is ``orchestration.run_started``, as the
  platform maps it; later ones are ``orchestration.agent_started`` with
  ``previous_agent``, which is what they mean. ``SelectSpeakerEvent`` (manual selection
  only) is ``orchestration.agent_started`` with its ``candidates``.
* Tool responses are matched to their call through the context: ``name`` and
  ``agent`` (the initiator) come from the tool call with the same id. ``status`` is
  ``"error"`` when the tool raised (or was not found, or got arguments that are not
  JSON), else ``"ok"``, for the response and for each of its ``responses``: AG2 says so
  in the ``ExecutedFunctionEvent`` (``is_exec_success``) it sends just before the
  response, which the context remembers by call id; for a call without one, a result
  beginning ``"Error: "`` (what AG2 puts in place of the result of a failed call) is an
  error.
* ``RunCompletionEvent.cost`` has no total: ``total_tokens`` is summed over the models
  of ``usage_including_cached_inference``.
* Timestamps are ISO 8601 UTC with one ``Z`` (the platform's carry ``+00:00Z``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mozaiks_bus.wire import format_time
from mozaiks_bus.wire import json_safe as wire_json_safe

__all__ = ["EventBuildContext", "build_ui_event_payload", "json_safe"]

_HANDOFFS = {
    "AfterWorksTransitionEvent": "after_work",
    "OnContextConditionTransitionEvent": "context",
    "OnConditionLLMTransitionEvent": "llm",
    "ReplyResultTransitionEvent": "reply_result",
}


@dataclass
class EventBuildContext:
    """What a run's earlier events tell about later ones (one per run)."""

    workflow_name: str | None = None
    turn_agent: str | None = None
    tool_call_initiators: dict[str, str] = field(default_factory=dict)
    tool_names_by_id: dict[str, str] = field(default_factory=dict)
    tool_call_succeeded: dict[str, bool] = field(default_factory=dict)
    run_started: bool = False


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON data: :func:`mozaiks_bus.wire.json_safe`, with AG2 agents
    shown by name and pydantic models by their dump; never raises."""
    return wire_json_safe(value, fallback=_object)


def _object(value: Any) -> Any:
    name = getattr(value, "name", None)
    if isinstance(name, str) and hasattr(value, "generate_reply"):  # an AG2 agent
        return name
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return json_safe(dump())
        except Exception:  # noqa: BLE001  # a model holding what cannot be dumped
            return str(value)
    return str(value)


def _now() -> str:
    return format_time(datetime.now(UTC))


def _name(agent: Any) -> str | None:
    if agent is None or isinstance(agent, str):
        return agent
    name = getattr(agent, "name", None)
    return name if isinstance(name, str) else str(agent)


def _text(content: Any) -> str:
    """The platform's normalised text: multimodal parts joined, other values as JSON."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [part.get("text", "") for part in content
                 if isinstance(part, dict) and part.get("type") == "text"]
        if parts:
            return "\n".join(str(part) for part in parts)
    return json.dumps(json_safe(content))


def _arguments(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return json_safe(raw)


def _text_event(c: Any, ctx: EventBuildContext) -> dict[str, Any]:
    out = {"kind": "text", "agent": _name(c.sender), "recipient": _name(c.recipient),
           "content": _text(c.content), "source": "ag2_textevent"}
    if not isinstance(c.content, str) and c.content is not None:
        out["raw_content"] = json_safe(c.content)
    return out


def _print_event(c: Any, ctx: EventBuildContext) -> dict[str, Any]:
    objects = [str(item) for item in getattr(c, "objects", [])]
    return {"kind": "print", "agent": ctx.turn_agent,
            "content": str(getattr(c, "sep", " ")).join(objects)}


def _input_request(c: Any, ctx: EventBuildContext) -> dict[str, Any]:
    request_id = getattr(c, "_mozaiks_request_id", None) or c.uuid
    return {"kind": "input_request", "agent": ctx.turn_agent, "request_id": str(request_id),
            "prompt": str(c.prompt), "password": bool(getattr(c, "password", False))}


def _tool_call(c: Any, ctx: EventBuildContext) -> dict[str, Any]:
    agent = _name(c.sender)
    calls = []
    for call in getattr(c, "tool_calls", None) or []:
        function = call.function
        calls.append({"call_id": call.id, "name": function.name,
                      "arguments": _arguments(function.arguments)})
    if not calls and getattr(c, "function_call", None) is not None:  # FunctionCallEvent
        calls.append({"call_id": None, "name": c.function_call.name,
                      "arguments": _arguments(c.function_call.arguments)})
    for call in calls:
        if call["call_id"]:
            ctx.tool_call_initiators[call["call_id"]] = agent or ""
            ctx.tool_names_by_id[call["call_id"]] = call["name"]
    first = calls[0] if calls else {"call_id": None, "name": None, "arguments": None}
    return {"kind": "tool_call", **first, "agent": agent, "tool_calls": calls}


_AG2_ERROR_PREFIX = "Error: "  # AG2's content in place of a failed call's result


def _record_execution(c: Any, ctx: EventBuildContext) -> None:
    """An ``ExecutedFunctionEvent``: remember whether its call succeeded."""
    call_id = getattr(c, "call_id", None)
    success = getattr(c, "is_exec_success", None)
    if call_id and isinstance(success, bool):
        ctx.tool_call_succeeded[str(call_id)] = success


def _tool_status(call_id: Any, content: Any, ctx: EventBuildContext) -> str:
    succeeded = ctx.tool_call_succeeded.pop(call_id, None) if call_id else None
    if succeeded is None:  # no ExecutedFunctionEvent seen for it
        succeeded = not (isinstance(content, str) and content.startswith(_AG2_ERROR_PREFIX))
    return "ok" if succeeded else "error"


def _tool_response(c: Any, ctx: EventBuildContext) -> dict[str, Any]:
    responses = getattr(c, "tool_responses", None) or []
    call_id = responses[0].tool_call_id if responses else None
    name = getattr(c, "name", None) or (ctx.tool_names_by_id.get(call_id) if call_id else None)
    agent = (ctx.tool_call_initiators.get(call_id) if call_id else None) or _name(c.sender)
    each = [{"call_id": r.tool_call_id, "result": json_safe(r.content),
             "status": _tool_status(r.tool_call_id, r.content, ctx)} for r in responses]
    if each:
        status = "error" if any(r["status"] == "error" for r in each) else "ok"
    else:  # a FunctionResponseEvent: one result, no call id
        status = _tool_status(None, c.content, ctx)
    return {"kind": "tool_response", "call_id": call_id, "name": name, "agent": agent,
            "result": json_safe(c.content), "status": status, "responses": each}


def _select_speaker(c: Any, ctx: EventBuildContext) -> dict[str, Any]:
    return {"kind": "orchestration.agent_started", "status": "in_progress", "agent": None,
            "timestamp": _now(), "previous_agent": ctx.turn_agent, "selected_speaker": None,
            "candidates": [_name(agent) for agent in getattr(c, "agents", None) or []]}


def _handoff(c: Any, ctx: EventBuildContext, handoff_type: str) -> dict[str, Any]:
    source = _name(c.source_agent)
    target = c.transition_target
    display = getattr(target, "display_name", None)
    return {"kind": "handoff", "handoff_type": handoff_type, "agent": source,
            "source_agent": source, "target": display() if callable(display) else str(target),
            "target_type": type(target).__name__}


def _resume(c: Any, ctx: EventBuildContext) -> dict[str, Any]:
    return {"kind": "resume_boundary", "agent": c.last_speaker_name, "reason": "resume",
            "message_count": len(getattr(c, "events", None) or [])}


def _run_chat(c: Any, ctx: EventBuildContext) -> dict[str, Any]:
    speaker = _name(c.speaker)
    previous, ctx.turn_agent = ctx.turn_agent, speaker
    if not ctx.run_started:
        ctx.run_started = True
        return {"kind": "orchestration.run_started", "status": "in_progress", "agent": speaker,
                "timestamp": _now(), "message": f"{speaker} starts the run"}
    return {"kind": "orchestration.agent_started", "status": "in_progress", "agent": speaker,
            "timestamp": _now(), "previous_agent": previous, "selected_speaker": speaker}


def _usage(c: Any, ctx: EventBuildContext) -> dict[str, Any]:
    return {"kind": "usage_summary", "agent": ctx.turn_agent,
            "usage": {"actual": json_safe(getattr(c, "actual", None)),
                      "total": json_safe(getattr(c, "total", None)),
                      "mode": json_safe(getattr(c, "mode", None))}}


def total_tokens(cost: Any) -> int:
    """Tokens over every model of a run's ``cost`` (including cached inference)."""
    usage = cost.get("usage_including_cached_inference") if isinstance(cost, dict) else None
    if not isinstance(usage, dict):
        return 0
    return sum(int(model.get("total_tokens") or 0) for model in usage.values()
               if isinstance(model, dict))


def _completed(c: Any, ctx: EventBuildContext) -> dict[str, Any]:
    return {"kind": "orchestration.run_completed", "status": "completed",
            "agent": _name(c.last_speaker), "timestamp": _now(), "summary": json_safe(c.summary),
            "cost": json_safe(c.cost), "total_tokens": total_tokens(c.cost)}


def _failed(c: Any, ctx: EventBuildContext) -> dict[str, Any]:
    error = c.error
    return {"kind": "orchestration.run_failed", "status": "failed", "agent": ctx.turn_agent,
            "timestamp": _now(), "message": str(error), "error": type(error).__name__,
            "code": "RUN_FAILED"}


_BUILDERS: dict[str, Callable[[Any, EventBuildContext], dict[str, Any]]] = {
    "TextEvent": _text_event,
    "PrintEvent": _print_event,
    "InputRequestEvent": _input_request,
    "ToolCallEvent": _tool_call,
    "FunctionCallEvent": _tool_call,
    "ToolResponseEvent": _tool_response,
    "FunctionResponseEvent": _tool_response,
    "SelectSpeakerEvent": _select_speaker,
    "GroupChatResumeEvent": _resume,
    "GroupChatRunChatEvent": _run_chat,
    "UsageSummaryEvent": _usage,
    "RunCompletionEvent": _completed,
    "ErrorEvent": _failed,
}


def _unknown(ev: Any, content: Any, ctx: EventBuildContext) -> dict[str, Any]:
    raw_type = getattr(ev, "type", None)
    return {"kind": "unknown", "raw_type": raw_type if isinstance(raw_type, str)
            else type(ev).__name__, "agent": _name(getattr(content, "sender", None))
            or ctx.turn_agent, "data": json_safe(content)}


def build_ui_event_payload(ev: Any, ctx: EventBuildContext | None = None) -> dict[str, Any]:
    """The UI payload of one AG2 event (see the module docstring). ``ctx`` carries what
    the run's earlier events said; without one, each call stands alone."""
    ctx = ctx if ctx is not None else EventBuildContext()
    class_name = type(ev).__name__
    content = getattr(ev, "content", ev)  # the wrapper's original event
    if class_name == "ExecutedFunctionEvent":
        _record_execution(content, ctx)
    try:
        if class_name in _HANDOFFS:
            payload = _handoff(content, ctx, _HANDOFFS[class_name])
        elif class_name in _BUILDERS:
            payload = _BUILDERS[class_name](content, ctx)
        else:
            payload = _unknown(ev, content, ctx)
    except (AttributeError, TypeError, ValueError, IndexError) as exc:  # an event of an
        payload = _unknown(ev, content, ctx)  # unexpected shape is still shown
        payload["error"] = f"{type(exc).__name__}: {exc}"
    payload["event_type"] = class_name
    if ctx.workflow_name is not None:
        payload.setdefault("workflow_name", ctx.workflow_name)
    safe: dict[str, Any] = json_safe(payload)
    return safe
