"""``POST /v1/events``: publish one CloudEvent or a batch, all or nothing, deduped by id.

The request is read by the CloudEvents HTTP binding (:mod:`.binding`: binary,
structured and batched modes, or a plain JSON object or array). Checks, in order (the
first failing one answers; nothing is written to Redis before the last): 401/403 token
and ``publish`` scope; 413 body over ``api_max_body_bytes`` (see :mod:`.limits`); 400
malformed JSON or nesting deeper than ``api_max_json_depth``; 413 more than
``api_max_batch`` events; 415 binary-mode data that is not JSON; 422 an
invalid event (``field`` = ``[i].<attribute>`` for a batch, ``ce-<attribute>`` for a
binary-mode header, and the rule broken;
``id``, ``type`` and ``source`` are required, ``specversion`` defaults to 1.0), a type
the catalog model rejects, a local-only type, or a type the routing table keeps in the
process (it would reach nobody); 403 a type outside the token's ``publish_patterns``;
409 an id already seen within ``api_dedupe_window_s`` with a different body (or twice in
the batch with different bodies); 503 + ``Retry-After`` when Redis cannot take it (or
the same event is being stored by a concurrent request).

202 ``{"accepted": [ids], "duplicates": [ids]}``: ``accepted`` were stored now, with
their dedupe marks, in one MULTI/EXEC (``Bus.publish_events``); ``duplicates`` had been
stored within the window and were not stored again. Dedupe is described in :mod:`.dedupe`.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from mozaiks_bus.connection import text
from mozaiks_bus.errors import BusClosed, InvalidEvent, TransportError
from mozaiks_bus.event import JSON_RULE, Event, is_json_safe
from mozaiks_bus.routing import Scope
from mozaiks_bus.server.binding import Mode, read_events
from mozaiks_bus.server.dedupe import Claims, digest
from mozaiks_bus.server.errors import HttpError, invalid
from mozaiks_bus.server.schemas import ERRORS, PublishResult, events_request_body
from mozaiks_bus.server.state import ServerState, get_state

__all__ = ["build_router", "unavailable"]

logger = logging.getLogger("mozaiks_bus.server")
_REMOTE = Scope.FANOUT | Scope.DURABLE | Scope.UI
_REQUIRED = ("id", "type", "source")


def unavailable(state: ServerState, message: str) -> HttpError:
    """A 503 telling the client when to retry."""
    return HttpError(503, "unavailable", message,
                    headers={"Retry-After": str(state.settings.api_retry_after_s)})


def _decode(item: Any, where: str) -> Event:
    if isinstance(item, dict):
        for name in _REQUIRED:
            if name not in item:
                raise invalid(InvalidEvent(name, "is required (CloudEvents 1.0)"), where=where)
    try:
        return Event.from_dict(item)
    except InvalidEvent as exc:
        raise invalid(exc, where=where) from None


def _check_event(state: ServerState, event: Event, where: str) -> bool:
    """Catalog, local-only and routing checks: raise 422 naming the field. True when
    the event has the ui scope (it cannot take the one-script path)."""
    bus = state.bus
    try:
        bus.catalog.validate(event.type, event.data)
        if bus.catalog.is_local_only(event.type):
            raise InvalidEvent("type", f"{event.type} is local-only (it carries live objects "
                               "in-process) and cannot be published over HTTP")
        scopes = bus.routing.resolve(event.type, subject=event.subject)
        if not scopes & _REMOTE:
            raise InvalidEvent("type", f"{event.type} routes to the local scope only (routing "
                               "table), so it would reach no other process")
        if scopes & Scope.UI and event.subject is not None:
            try:
                bus.ui.keys.ui_channel(event.subject)
            except InvalidEvent as exc:
                raise InvalidEvent("subject", f"names the chat of a ui event: {exc.rule}")\
                    from None
        if not is_json_safe(event.data):
            raise InvalidEvent("data", JSON_RULE)
    except InvalidEvent as exc:
        raise invalid(exc, where=where) from None
    return bool(scopes & Scope.UI)


def _unique(events: list[tuple[Event, str]]) -> tuple[list[tuple[Event, str]], list[str]]:
    """Drop repeats of an id inside the batch (same body) or answer 409 (different)."""
    seen: dict[str, str] = {}
    unique: list[tuple[Event, str]] = []
    repeats: list[str] = []
    for event, item_digest in events:
        first = seen.get(event.id)
        if first is None:
            seen[event.id] = item_digest
            unique.append((event, item_digest))
        elif first == item_digest:
            repeats.append(event.id)
        else:
            raise HttpError(409, "conflict", f"id {event.id!r} appears twice in the batch "
                           "with different bodies", field="id")
    return unique, repeats


def build_router(max_batch: int) -> APIRouter:
    """The router of ``POST /v1/events`` (its documented batch bound is ``max_batch``)."""
    router = APIRouter()
    router.add_api_route(
        "/v1/events", publish_events, methods=["POST"], status_code=202,
        response_model=PublishResult, tags=["events"],
        summary="Publish one CloudEvent or a batch (all or nothing, deduped by id)",
        responses=ERRORS(400, 401, 403, 409, 413, 422, 503),
        openapi_extra=events_request_body(max_batch),
    )
    return router


async def publish_events(request: Request) -> JSONResponse:
    """See the module docstring for the checks and the answer."""
    state = get_state(request)
    settings = state.settings
    principal = state.auth.require(request, "publish")
    items, is_batch, mode = read_events(request.headers, await request.body(),
                                        max_depth=settings.api_max_json_depth,
                                        max_batch=settings.api_max_batch)
    decoded: list[tuple[Event, str]] = []
    any_ui = False
    for index, item in enumerate(items):
        where = f"[{index}]." if is_batch else ""
        event = _decode(item, "ce-" if mode is Mode.BINARY else where)
        if not principal.may_publish(event.type):
            raise HttpError(403, "forbidden", f"token '{principal.name}' may not publish "
                           f"{event.type} (publish_patterns)", field=f"{where}type")
        any_ui = _check_event(state, event, where) or any_ui
        decoded.append((event, digest(item)))
    unique, repeats = _unique(decoded)
    if not any_ui:
        return await _store_if_new(state, unique, repeats)
    claims = await _claim(state, unique)
    stored = {event_id for event_id, _ in claims.claimed}
    events = [event for event, _ in unique if event.id in stored]
    try:
        await state.bus.publish_events(events, marks=state.dedupe.marks(claims.claimed))
    except BaseException as exc:
        await _release(state, claims)
        if isinstance(exc, InvalidEvent):
            raise invalid(exc) from None
        if isinstance(exc, TransportError | BusClosed):
            raise unavailable(state, f"Redis did not store the events: {exc}") from None
        raise
    return _answer(state, [event.id for event in events],
                   list(dict.fromkeys([*claims.duplicates, *repeats])))


def _answer(state: ServerState, accepted: list[str], duplicates: list[str]) -> JSONResponse:
    state.metrics.events["accepted"] += len(accepted)
    state.metrics.events["duplicate"] += len(duplicates)
    # PublishResult documents this body; building the JSON directly skips re-validation
    return JSONResponse({"accepted": accepted, "duplicates": duplicates}, status_code=202)


async def _store_if_new(state: ServerState, unique: list[tuple[Event, str]],
                        repeats: list[str]) -> JSONResponse:
    """Dedupe check, store and mark in one script (events without the ui scope)."""
    marks = state.dedupe.marks([(event.id, item_digest) for event, item_digest in unique])
    try:
        found = await state.bus.publish_events([event for event, _ in unique], marks=marks,
                                               only_new=True)
    except InvalidEvent as exc:
        raise invalid(exc) from None
    except (TransportError, BusClosed) as exc:
        raise unavailable(state, f"Redis did not store the events: {exc}") from None
    accepted, duplicates = [], []
    for (event, _), mark, value in zip(unique, marks, found, strict=False):
        if value == 1:
            accepted.append(event.id)
        elif value is None:  # empty, but a later key stopped the script: nothing stored
            continue
        elif text(value) == mark.value:
            duplicates.append(event.id)
        elif text(value) == "p" + mark.value[1:]:  # "p:<same digest>": a claim in flight
            raise unavailable(state, f"event {event.id!r} is being stored by another "
                              "request; retry to learn the outcome")
        else:
            raise HttpError(409, "conflict", f"id {event.id!r} was already published "
                           "with a different body (within api_dedupe_window_s)", field="id")
    return _answer(state, accepted, list(dict.fromkeys([*duplicates, *repeats])))


async def _claim(state: ServerState, unique: list[tuple[Event, str]]) -> Claims:
    try:
        claims = await state.dedupe.claim([(event.id, d) for event, d in unique])
    except TransportError as exc:
        raise unavailable(state, f"Redis cannot take events now: {exc}") from None
    if claims.conflicts or claims.in_flight:
        await _release(state, claims)
        if claims.conflicts:
            raise HttpError(409, "conflict", f"id {claims.conflicts[0]!r} was already published "
                           "with a different body (within api_dedupe_window_s)", field="id")
        raise unavailable(state, f"event {claims.in_flight[0]!r} is being stored by another "
                          "request; retry to learn the outcome")
    return claims


async def _release(state: ServerState, claims: Claims) -> None:
    try:
        await state.dedupe.release(claims.claimed)
    except TransportError as exc:  # the pending claims expire by themselves
        logger.warning("could not release %d dedupe claims: %s", len(claims.claimed), exc)

