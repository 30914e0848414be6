"""Admin endpoints for HTTP sinks' dead letters (``admin`` scope), as ``dlq --sink`` does.

* ``GET /v1/sinks/{sink}/dead-letters?limit=``: the sink's dead letters, newest first
  (``mozaiks_bus.sinks.SinkDeadLetter.to_dict``: id, event, error, status, attempts...).
* ``POST /v1/sinks/{sink}/dead-letters/{id}/replay``: deliver it again (a new RQ job,
  the same idempotency key); ``{id}`` is the dead letter's entry id or its event's id
  (every dead letter of that event is replayed).
* ``DELETE /v1/sinks/{sink}/dead-letters/{id}``: 204.

404 names an unknown sink or dead letter; Redis trouble answers 503 + Retry-After.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from mozaiks_bus.errors import ConfigError, MozaiksBusError, TransportError
from mozaiks_bus.names import SINK
from mozaiks_bus.server.errors import HttpError
from mozaiks_bus.server.events import unavailable
from mozaiks_bus.server.schemas import ERRORS
from mozaiks_bus.server.state import ServerState, get_state

__all__ = ["router"]

router = APIRouter(tags=["admin"])
SinkName = Annotated[str, Path(max_length=59, examples=["email"])]
LetterId = Annotated[str, Path(min_length=1, max_length=256,
                               description="the dead letter's entry id, or its event's id")]


def _state(request: Request, sink: str) -> ServerState:
    state = get_state(request)
    state.auth.require(request, "admin")
    if not SINK.matches(sink) or all(s.name != sink for s in state.settings.sinks):
        raise HttpError(404, "not_found", f"no sink named {sink!r} is configured")
    return state


async def _call(state: ServerState, action: str, work: Any) -> Any:
    from mozaiks_bus.sinks import admin_client  # noqa: PLC0415  # RQ: when asked

    def run() -> Any:
        with admin_client(state.settings, action) as client:
            return work(client)

    try:
        return await asyncio.to_thread(run)
    except TransportError as exc:
        raise unavailable(state, f"Redis cannot {action} now: {type(exc).__name__}") from None
    except ConfigError as exc:
        raise HttpError(404, "not_found", exc.reason) from None
    except MozaiksBusError as exc:
        raise HttpError(404, "not_found", str(exc)) from None


@router.get("/v1/sinks/{sink}/dead-letters", responses=ERRORS(401, 403, 404, 503),
            summary="A sink's dead letters, newest first")
async def sink_dead_letters(request: Request, sink: SinkName,
                            limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                            ) -> dict[str, Any]:
    """The sink's dead letters."""
    from mozaiks_bus.sinks import list_dead_letters  # noqa: PLC0415

    state = _state(request, sink)
    letters = await _call(state, "read sink dead letters",
                          lambda client: list_dead_letters(client, state.settings, sink,
                                                           limit=limit))
    return {"dead_letters": [letter.to_dict() for letter in letters]}


@router.post("/v1/sinks/{sink}/dead-letters/{letter}/replay",
             responses=ERRORS(401, 403, 404, 503), summary="Deliver a sink dead letter again")
async def replay_sink_dead_letter(request: Request, sink: SinkName, letter: LetterId
                                  ) -> dict[str, Any]:
    """Replay the dead letter(s) named by ``letter``."""
    from mozaiks_bus.sinks import find_dead_letters, replay_dead_letter  # noqa: PLC0415

    state = _state(request, sink)

    def work(client: Any) -> dict[str, Any]:
        found = find_dead_letters(client, state.settings, sink, letter)
        jobs = [replay_dead_letter(client, state.settings, sink, dl.id) for dl in found]
        return {"sink": sink, "replayed": [dl.id for dl in found], "jobs": jobs}

    result: dict[str, Any] = await _call(state, "replay a sink dead letter", work)
    return result


@router.delete("/v1/sinks/{sink}/dead-letters/{letter}", status_code=204,
               responses=ERRORS(401, 403, 404, 503), summary="Delete a sink dead letter")
async def delete_sink_dead_letter(request: Request, sink: SinkName, letter: LetterId
                                  ) -> Response:
    """Delete the dead letter(s) named by ``letter``."""
    from mozaiks_bus.sinks import delete_dead_letter, find_dead_letters  # noqa: PLC0415

    state = _state(request, sink)

    def work(client: Any) -> None:
        for found in find_dead_letters(client, state.settings, sink, letter):
            delete_dead_letter(client, state.settings, sink, found.id)

    await _call(state, "delete a sink dead letter", work)
    return Response(status_code=204)
