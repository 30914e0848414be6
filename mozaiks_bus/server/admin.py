"""Admin endpoints (``admin`` scope): durable streams, dead letters, HTTP sinks.

* ``GET /v1/streams``: every durable stream with its length, bounds, dead letters and
  groups (consumers, pending, lag, oldest pending id and age).
* ``GET /v1/dead-letters?type=&limit=``: dead letters, newest first.
* ``POST /v1/dead-letters/{type}/{entry_id}/replay``: put one back on its stream for
  its group only (the event keeps its id); 404 if there is no such dead letter.
* ``DELETE /v1/dead-letters/{type}/{entry_id}``: 204, or 404.
  A dead letter is named by its event type and its id in that type's dead-letter stream
  (two path segments: type names hold dots, never slashes).
* ``GET /v1/sinks``: each configured sink with its state (circuit, queued, dead letters,
  counters, last error) from :func:`mozaiks_bus.sinks.sink_states`, and the MassTransit
  bridge (instances, connected, lag, pending, dead letters) when ``amqp_url`` is set;
  never a secret.

Redis trouble answers 503 + Retry-After; a bad type or id 422.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from mozaiks_bus.durable.streams import is_entry_id
from mozaiks_bus.errors import InvalidEvent, MozaiksBusError, TransportError
from mozaiks_bus.event import validate_type
from mozaiks_bus.server.errors import HttpError, invalid
from mozaiks_bus.server.events import unavailable
from mozaiks_bus.server.schemas import ERRORS, DeadLettersOut, ReplayResult, SinksOut, StreamsOut
from mozaiks_bus.server.state import ServerState, get_state

__all__ = ["router", "sink_states_of"]

router = APIRouter(tags=["admin"])
_U64 = 2**64 - 1
EntryId = Annotated[str, Path(min_length=1, max_length=256,
                              description="the dead letter's id in the type's dead-letter "
                                          "stream, or the id of its event",
                              examples=["1735732800000-0"])]
TypeName = Annotated[str, Path(max_length=128, examples=["notification.created"])]


def _admin(request: Request) -> ServerState:
    state = get_state(request)
    state.auth.require(request, "admin")
    return state


def _type(type_name: str) -> str:
    try:
        return validate_type(type_name)
    except InvalidEvent as exc:
        raise invalid(exc) from None


def _entry(entry_id: str) -> str:
    """An event id, or a stream id Redis accepts: both parts fit in 64 bits unsigned."""
    if is_entry_id(entry_id) and any(int(part) > _U64 for part in entry_id.split("-")):
        raise invalid(InvalidEvent("entry_id", "both parts must be at most 2^64-1",
                                   value=entry_id))
    return entry_id


@router.get("/v1/streams", response_model=StreamsOut, responses=ERRORS(401, 403, 503),
            summary="Durable streams with length, groups, lag and pending")
async def list_streams(request: Request) -> StreamsOut:
    """Every durable stream of this install."""
    state = _admin(request)
    try:
        streams = await state.bus.streams.streams()
    except TransportError as exc:
        raise unavailable(state, f"Redis cannot be read now: {exc}") from None
    return StreamsOut(streams=[stream.to_dict() for stream in streams])


@router.get("/v1/dead-letters", response_model=DeadLettersOut,
            responses=ERRORS(401, 403, 422, 503), summary="Dead letters, newest first")
async def list_dead_letters(
    request: Request,
    type: Annotated[str | None, Query(max_length=128, description="one event type")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DeadLettersOut:
    """Dead letters of one type, or of every type."""
    state = _admin(request)
    names = None if type is None else [_type(type)]
    try:
        letters = await state.bus.streams.dead_letters(names, limit=limit)
    except TransportError as exc:
        raise unavailable(state, f"Redis cannot be read now: {exc}") from None
    return DeadLettersOut.model_validate({"dead_letters": [dl.to_dict() for dl in letters]})


@router.post("/v1/dead-letters/{type}/{entry_id}/replay", response_model=ReplayResult,
             responses=ERRORS(401, 403, 404, 422, 503),
             summary="Replay one dead letter to its group")
async def replay_dead_letter(request: Request, type: TypeName, entry_id: EntryId
                             ) -> ReplayResult:
    """Put the dead letter back on its stream for its group only. Named by an event id,
    every dead letter of that event (one per group that failed it) is replayed."""
    state = _admin(request)
    name, entry_id = _type(type), _entry(entry_id)
    inspector = state.bus.streams
    try:
        letters = await inspector.find_dead_letters(name, entry_id)
        new_ids = [await inspector.replay_dead_letter(name, dl.id) for dl in letters]
    except TransportError as exc:
        raise unavailable(state, f"Redis cannot replay now: {exc}") from None
    except MozaiksBusError:
        raise _missing(name, entry_id) from None
    return ReplayResult(replayed=letters[0].id, type=name, new_id=new_ids[0],
                        replayed_all=[dl.id for dl in letters], new_ids=new_ids)


@router.delete("/v1/dead-letters/{type}/{entry_id}", status_code=204,
               responses=ERRORS(401, 403, 404, 422, 503), summary="Delete one dead letter")
async def delete_dead_letter(request: Request, type: TypeName, entry_id: EntryId) -> Response:
    """Delete one dead letter."""
    state = _admin(request)
    name, entry_id = _type(type), _entry(entry_id)
    inspector = state.bus.streams
    try:
        letters = await inspector.find_dead_letters(name, entry_id)
        removed = [await inspector.delete_dead_letter(name, dl.id) for dl in letters]
    except TransportError as exc:
        raise unavailable(state, f"Redis cannot delete now: {exc}") from None
    except MozaiksBusError:
        raise _missing(name, entry_id) from None
    if not any(removed):
        raise _missing(name, entry_id)
    return Response(status_code=204)


def _missing(type_name: str, entry_id: str) -> HttpError:
    return HttpError(404, "not_found", f"{type_name} has no dead letter with entry id or "
                     f"event id {entry_id!r}")


@router.get("/v1/sinks", response_model=SinksOut, responses=ERRORS(401, 403, 503),
            summary="HTTP sinks with circuit, queued, dead letters and last error")
async def list_sinks(request: Request) -> SinksOut:
    """Every configured sink and its state."""
    state = _admin(request)
    try:
        sinks = await asyncio.to_thread(sink_states_of, state)
        bridge = await asyncio.to_thread(bridge_of, state)
    except TransportError as exc:
        raise unavailable(state, f"Redis cannot be read now: {type(exc).__name__}") from None
    return SinksOut(sinks=sinks, bridge=bridge)


def bridge_of(state: ServerState) -> dict[str, Any] | None:
    """The MassTransit bridge's report, or None without ``amqp_url`` (blocking)."""
    settings = state.settings
    if not settings.amqp_url or settings.broker_url is None:
        return None
    from mozaiks_bus.amqp import bridge_report  # noqa: PLC0415
    from mozaiks_bus.sinks import admin_client  # noqa: PLC0415

    with admin_client(settings, "read the bridge", on="broker") as client:
        return bridge_report(client, settings)


def sink_states_of(state: ServerState) -> list[dict[str, Any]]:
    """Every configured sink's state, JSON-ready (blocking: run it in a thread)."""
    settings = state.settings
    if not settings.sinks or settings.broker_url is None:
        return []
    from mozaiks_bus.sinks import admin_client, sink_states  # noqa: PLC0415  # RQ: when asked

    with admin_client(settings) as client:
        return [sink.to_dict() for sink in sink_states(client, settings)]
