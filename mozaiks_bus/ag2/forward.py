"""``await forward_run(response, bus, chat_id)``: one AG2 run's events into ``bus.ui``.

Contract
--------
* ``response`` is what a run returns: ``agent.run(...)`` / ``run_group_chat(...)`` (a
  ``RunResponse``, its ``events`` a blocking iterator: read in a worker thread so the
  loop stays free) or ``await agent.a_run(...)`` / ``a_run_group_chat(...)`` (an
  ``AsyncRunResponse``, ``async for``). Anything with an ``events`` iterable works.
* Each event becomes a payload (:func:`~.payloads.build_ui_event_payload`, one context
  per run) sent with ``await bus.ui.send(chat_id, payload)``, one after the other, so
  the chat's frames are in the run's order and each is stored before the next is built.
* An ``input_request`` is registered with ``bus.ui.register_input_request`` before its
  frame goes out, its callback being the event's ``respond``: a reply posted to any API
  worker (``POST /v1/input`` or the WebSocket) reaches the run, once. The frame carries
  the id that was registered.
* A run that fails (an ``ErrorEvent``, or its iterator raising, as AG2's does right after
  the ErrorEvent) ends with one ``orchestration.run_failed`` frame; the frames before it
  were already sent. The error is returned in :class:`RunOutcome`, not raised.
* At the end, durably: ``chat.usage_summary`` (tokens from the run's usage summary or
  its cost; only when ``app_id``, ``user_id`` and ``workflow_name`` are known, as the
  catalog requires them) and ``chat.run_complete`` (``status`` ``completed`` or
  ``failed``), both with the chat id as subject.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mozaiks_bus.ag2.payloads import EventBuildContext, build_ui_event_payload, total_tokens
from mozaiks_bus.bus import Bus
from mozaiks_bus.wire import format_time

__all__ = ["RunOutcome", "forward_run"]

logger = logging.getLogger("mozaiks_bus.ag2")
_DONE = object()


@dataclass
class RunOutcome:
    """What :func:`forward_run` saw: frames sent, how the run ended, its usage."""

    chat_id: str
    frames: list[str] = field(default_factory=list)  # the ui ids, in order
    status: str = "completed"
    error: BaseException | None = None
    summary: Any = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


async def _events(response: Any) -> AsyncIterator[Any]:
    events = response.events
    if hasattr(events, "__aiter__"):
        async for event in events:
            yield event
        return
    iterator: Iterator[Any] = iter(events)
    while True:  # a RunResponse blocks on its queue: one step at a time off the loop
        event = await asyncio.to_thread(next, iterator, _DONE)
        if event is _DONE:
            return
        yield event


def _responder(respond: Any) -> Any:
    async def answer(text: str) -> None:
        result = respond(text)
        if inspect.isawaitable(result):
            await result
    return answer


def _count_usage(outcome: RunOutcome, payload: dict[str, Any]) -> None:
    if payload["kind"] == "usage_summary":
        usages = ((payload.get("usage") or {}).get("total") or {}).get("usages") or []
        outcome.prompt_tokens = sum(int(u.get("prompt_tokens") or 0) for u in usages)
        outcome.completion_tokens = sum(int(u.get("completion_tokens") or 0) for u in usages)
        outcome.total_tokens = sum(int(u.get("total_tokens") or 0) for u in usages)
    elif payload["kind"] == "orchestration.run_completed":
        outcome.summary = payload.get("summary")
        if not outcome.total_tokens:
            cost = payload.get("cost") or {}
            outcome.total_tokens = total_tokens(cost)
            usage = cost.get("usage_including_cached_inference") or {}
            models = [m for m in usage.values() if isinstance(m, dict)]
            outcome.prompt_tokens = sum(int(m.get("prompt_tokens") or 0) for m in models)
            outcome.completion_tokens = sum(int(m.get("completion_tokens") or 0)
                                            for m in models)


async def forward_run(response: Any, bus: Bus, chat_id: str, *,
                      ctx: EventBuildContext | None = None, app_id: str | None = None,
                      user_id: str | None = None,
                      workflow_name: str | None = None) -> RunOutcome:
    """Send a run's events to ``chat_id`` (see the module docstring)."""
    ctx = ctx if ctx is not None else EventBuildContext(workflow_name=workflow_name)
    outcome = RunOutcome(chat_id)
    failed_frame = False
    try:
        async for event in _events(response):
            payload = build_ui_event_payload(event, ctx)
            if payload["kind"] == "input_request":
                respond = getattr(getattr(event, "content", None), "respond", None)
                if respond is not None:
                    payload["request_id"] = bus.ui.register_input_request(
                        chat_id, payload["request_id"], _responder(respond))
            elif payload["kind"] == "orchestration.run_failed":
                failed_frame = True
                outcome.status = "failed"
            _count_usage(outcome, payload)
            outcome.frames.append(await bus.ui.send(chat_id, payload))
    except Exception as exc:  # noqa: BLE001  # the contract: a failed run is reported
        outcome.status, outcome.error = "failed", exc
        if not failed_frame:
            outcome.frames.append(await bus.ui.send(chat_id, {
                "kind": "orchestration.run_failed", "status": "failed",
                "agent": ctx.turn_agent, "timestamp": format_time(datetime.now(UTC)),
                "message": str(exc), "error": type(exc).__name__, "code": "RUN_FAILED",
                "event_type": "ErrorEvent"}))
        logger.warning("AG2 run of chat %s failed: %s: %s", chat_id, type(exc).__name__, exc)
    await _publish_results(bus, outcome, app_id=app_id, user_id=user_id,
                           workflow_name=workflow_name or ctx.workflow_name)
    return outcome


async def _publish_results(bus: Bus, outcome: RunOutcome, *, app_id: str | None,
                           user_id: str | None, workflow_name: str | None) -> None:
    chat_id = outcome.chat_id
    if app_id and user_id and workflow_name:
        await bus.publish("chat.usage_summary", {
            "event_id": uuid.uuid4().hex[:12], "event_ts": format_time(datetime.now(UTC)),
            "chat_id": chat_id, "app_id": app_id, "user_id": user_id,
            "workflow_name": workflow_name, "prompt_tokens": outcome.prompt_tokens,
            "completion_tokens": outcome.completion_tokens,
            "total_tokens": outcome.total_tokens,
        }, subject=chat_id)
    else:
        logger.debug("chat %s: no chat.usage_summary (app_id, user_id and workflow_name "
                     "are required)", chat_id)
    await bus.publish("chat.run_complete", {
        "chat_id": chat_id, "workflow_name": workflow_name, "app_id": app_id,
        "user_id": user_id, "status": outcome.status,
    }, subject=chat_id)
