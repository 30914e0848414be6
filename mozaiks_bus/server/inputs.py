"""``POST /v1/input``: the REST twin of the browser's ``user.input.submit`` and
``ui_tool_response`` frames (``ui`` scope).

``{"input_request_id", "text"}`` goes to ``bus.ui.submit_user_input``; ``{"event_id",
"response"}`` to ``bus.ui.submit_response``. Either reaches the callback or waiter in
whichever process registered it, once: 200 ``{"kind", "id", "status": "accepted"}``;
404 ``not_pending`` when the id is unknown, expired or already answered (the platform's
``/api/user-input/submit`` answers 404 likewise); 503 + Retry-After when Redis cannot.
Bodies follow the limits of :mod:`.limits` (413, 400).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError

from mozaiks_bus.errors import InvalidEvent, TransportError
from mozaiks_bus.event import is_json_safe
from mozaiks_bus.server.errors import HttpError, invalid
from mozaiks_bus.server.events import unavailable
from mozaiks_bus.server.limits import parse_json
from mozaiks_bus.server.schemas import (
    ERRORS,
    InputAck,
    UiToolResponseIn,
    UserInputIn,
    input_request_body,
)
from mozaiks_bus.server.state import get_state

__all__ = ["router"]

router = APIRouter()


def _parse(body: Any) -> UserInputIn | UiToolResponseIn:
    model: type[UserInputIn] | type[UiToolResponseIn] = (
        UiToolResponseIn if isinstance(body, dict) and "event_id" in body else UserInputIn
    )
    try:
        message = model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        rule = str(first["msg"])
        hint = "send {input_request_id, text} or {event_id, response}"
        raise HttpError(422, "invalid_request", f"{field}: {rule} ({hint})", field=field,
                       rule=rule) from None
    if isinstance(message, UiToolResponseIn) and not is_json_safe(message.response):
        raise HttpError(422, "invalid_request", "response: must be plain JSON with finite "
                       "numbers", field="response", rule="must be JSON-serialisable")
    return message


@router.post(
    "/v1/input", response_model=InputAck, tags=["ui"],
    summary="Answer an input request or a UI tool, in whichever process waits for it",
    responses=ERRORS(400, 401, 403, 404, 413, 422, 503),
    openapi_extra=input_request_body(),
)
async def submit_input(request: Request) -> InputAck:
    """See the module docstring."""
    state = get_state(request)
    state.auth.require(request, "ui")
    body = parse_json(await request.body(), max_depth=state.settings.api_max_json_depth)
    message = _parse(body)
    ui = state.bus.ui
    try:
        if isinstance(message, UserInputIn):
            kind, key = "user_input", message.input_request_id
            accepted = await ui.submit_user_input(key, message.text)
        else:
            kind, key = "ui_tool_response", message.event_id
            accepted = await ui.submit_response(key, message.response)
    except InvalidEvent as exc:
        raise invalid(exc) from None
    except TransportError as exc:
        raise unavailable(state, f"Redis cannot route the input now: {exc}") from None
    status = "accepted" if accepted else "rejected"
    state.metrics.inputs[(kind, status)] += 1
    if not accepted:
        raise HttpError(404, "not_pending", f"no pending {kind.replace('_', ' ')} {key!r} "
                       "(unknown, expired or already answered)")
    return InputAck(kind=kind, id=key, status=status)
