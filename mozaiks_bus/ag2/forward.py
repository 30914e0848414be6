"""``await forward_run(response, bus, chat_id)``: one AG2 run's events into ``bus.ui``.

Contract
--------
* ``response`` is what a run returns: ``agent.run(...)`` / ``run_group_chat(...)`` (a
  ``RunResponse``, its ``events`` a blocking iterator: read in a worker thread so the
  loop stays free) or ``await agent.a_run(...)`` / ``a_run_group_chat(...)`` (an
  ``AsyncRunResponse``, ``async for``). Anything with an ``events`` iterable works.
* Each event becomes a payload (:func:`~.payloads.build_ui_event_payload`, one context
  per run) sent with ``bus.ui.send(chat_id, payload)`` by one sender
  (:class:`~.outbox.FrameOutbox`), one after the other, so the chat's frames are in the
  run's order.
* **A UI outage does not kill or orphan the run.** While Redis is away, frames wait (at
  most ``max_pending_frames``; then the reading of the run's events waits too) and are
  sent, in order, on recovery: a run whose UI is away for less than ``ui_outage_s``
  (default 60 s) completes as if nothing happened. An outage that lasts ``ui_outage_s``
  (or a send that fails otherwise: the bus closed, a bad chat id) gives the UI up: the
  run is **stopped**, since nobody can answer it any more: each of its input requests
  from then on (and any whose frame was not sent) is answered ``exit``, AG2's word for
  the human ending the chat; its remaining events are read (so its thread or task ends)
  and their frames dropped (counted in ``RunOutcome.frames_dropped``). Such a run
  returns ``status`` ``failed`` and the send's error in ``RunOutcome.error``.
* An ``input_request`` is registered with ``bus.ui.register_input_request`` before its
  frame goes out, its callback being the event's ``respond``: a reply posted to any API
  worker (``POST /v1/input`` or the WebSocket) reaches the run, once. The frame carries
  the id that was registered.
* A run that fails (an ``ErrorEvent``, or its iterator raising, as AG2's does right after
  the ErrorEvent) ends with one ``orchestration.run_failed`` frame, after the frames
  before it. The error is returned in :class:`RunOutcome`, not raised.
* At the end, durably: ``chat.usage_summary`` (tokens from the run's usage summary or
  its cost; only when ``app_id``, ``user_id`` and ``workflow_name`` are known, as the
  catalog requires them) and ``chat.run_complete`` (``status`` ``completed`` or
  ``failed``), both with the chat id as subject; retried like frames for up to
  ``ui_outage_s``, then logged and left out (``RunOutcome.results_published`` false).
* Nothing but cancellation (or a bug) raises out of ``forward_run``: failures of the
  run, of the UI and of Redis are returned in :class:`RunOutcome`. Bad arguments
  (``max_pending_frames`` below 1, ``ui_outage_s`` below 0) raise ConfigError at once.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mozaiks_bus.ag2.outbox import FrameOutbox, OnDrop, retry_transport
from mozaiks_bus.ag2.payloads import EventBuildContext, build_ui_event_payload, total_tokens
from mozaiks_bus.bus import Bus
from mozaiks_bus.errors import BusClosed, TransportError
from mozaiks_bus.wire import format_time

__all__ = ["RunOutcome", "forward_run"]

logger = logging.getLogger("mozaiks_bus.ag2")
_DONE = object()
_STOP_REPLY = "exit"  # what a human types to end an AG2 chat
DEFAULT_MAX_PENDING_FRAMES = 1000
DEFAULT_UI_OUTAGE_S = 60.0


@dataclass
class RunOutcome:
    """What :func:`forward_run` saw: frames sent, how the run ended, its usage."""

    chat_id: str
    frames: list[str] = field(default_factory=list)  # the ui ids, in order
    status: str = "completed"
    error: BaseException | None = None
    frames_dropped: int = 0  # frames not sent because the UI was given up
    results_published: bool = True  # chat.usage_summary / chat.run_complete stored
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
                      user_id: str | None = None, workflow_name: str | None = None,
                      max_pending_frames: int = DEFAULT_MAX_PENDING_FRAMES,
                      ui_outage_s: float = DEFAULT_UI_OUTAGE_S) -> RunOutcome:
    """Send a run's events to ``chat_id`` (see the module docstring)."""
    ctx = ctx if ctx is not None else EventBuildContext(workflow_name=workflow_name)
    outcome = RunOutcome(chat_id)
    outbox = FrameOutbox(bus, chat_id, max_pending=max_pending_frames, outage_s=ui_outage_s)
    outbox.start()
    try:
        try:
            await _read_run(response, outbox, bus=bus, ctx=ctx, outcome=outcome)
        except Exception as exc:  # noqa: BLE001  # the contract: a failed run is reported
            reported = outcome.status == "failed"  # its own run_failed frame is queued
            outcome.status, outcome.error = "failed", exc
            logger.warning("AG2 run of chat %s failed: %s: %s", chat_id, type(exc).__name__,
                           exc)
            if not reported:
                await outbox.put(_run_failed(ctx, exc))
        await outbox.close()
    except BaseException:
        await outbox.cancel()
        raise
    outcome.frames, outcome.frames_dropped = outbox.sent, outbox.dropped
    if outbox.error is not None:
        outcome.status = "failed"
        outcome.error = outcome.error or outbox.error
    await _publish_results(bus, outcome, app_id=app_id, user_id=user_id,
                           workflow_name=workflow_name or ctx.workflow_name,
                           outage_s=ui_outage_s)
    return outcome


async def _read_run(response: Any, outbox: FrameOutbox, *, bus: Bus, ctx: EventBuildContext,
                    outcome: RunOutcome) -> None:
    """Every event of the run into ``outbox`` (``outcome.status`` is ``failed`` once the
    run sent its own ``orchestration.run_failed``). Raises what the run's iterator raises."""
    async for event in _events(response):
        payload = build_ui_event_payload(event, ctx)
        on_drop: OnDrop | None = None
        if payload["kind"] == "input_request":
            respond = getattr(getattr(event, "content", None), "respond", None)
            if respond is not None:
                answer = _responder(respond)
                on_drop = _stopper(answer)  # if the frame is dropped, nobody can answer
                if not outbox.gave_up:
                    payload["request_id"] = bus.ui.register_input_request(
                        outbox.chat_id, payload["request_id"], answer)
        elif payload["kind"] == "orchestration.run_failed":
            outcome.status = "failed"
        _count_usage(outcome, payload)
        await outbox.put(payload, on_drop)


def _stopper(answer: Any) -> OnDrop:
    async def stop() -> None:
        await answer(_STOP_REPLY)
    return stop


def _run_failed(ctx: EventBuildContext, exc: BaseException) -> dict[str, Any]:
    return {"kind": "orchestration.run_failed", "status": "failed", "agent": ctx.turn_agent,
            "timestamp": format_time(datetime.now(UTC)), "message": str(exc),
            "error": type(exc).__name__, "code": "RUN_FAILED", "event_type": "ErrorEvent"}


async def _publish_results(bus: Bus, outcome: RunOutcome, *, app_id: str | None,
                           user_id: str | None, workflow_name: str | None,
                           outage_s: float) -> None:
    chat_id = outcome.chat_id
    results: list[tuple[str, dict[str, Any]]] = []
    if app_id and user_id and workflow_name:
        results.append(("chat.usage_summary", {
            "event_id": uuid.uuid4().hex[:12], "event_ts": format_time(datetime.now(UTC)),
            "chat_id": chat_id, "app_id": app_id, "user_id": user_id,
            "workflow_name": workflow_name, "prompt_tokens": outcome.prompt_tokens,
            "completion_tokens": outcome.completion_tokens,
            "total_tokens": outcome.total_tokens,
        }))
    else:
        logger.debug("chat %s: no chat.usage_summary (app_id, user_id and workflow_name "
                     "are required)", chat_id)
    results.append(("chat.run_complete", {
        "chat_id": chat_id, "workflow_name": workflow_name, "app_id": app_id,
        "user_id": user_id, "status": outcome.status,
    }))
    for type_name, data in results:
        try:
            await retry_transport(functools.partial(bus.publish, type_name, data,
                                                    subject=chat_id),
                                  outage_s=outage_s, what=f"chat {chat_id} {type_name}")
        except (TransportError, BusClosed) as exc:
            outcome.results_published = False
            logger.warning("chat %s: %s not published: %s", chat_id, type_name, exc)
