"""The attach point for the AI runtime's ``SimpleTransport``: UI frames and inputs via the bus.

The runtime keeps its transport; at start-up it changes two lines::

    transport = await SimpleTransport.get_instance()
    attach_transport(transport, bus)          # from mozaiks_bus.compat import attach_transport

and from then on, on that instance:

* ``send_event_to_ui(event, chat_id)`` does what it did (its own sockets, visibility
  filtering, AG-UI) and also ``bus.ui.send(chat_id, event)`` for a ``{"kind": ...}``
  event or a pre-built ``{"type", "data"}`` envelope: every API worker's
  ``/v1/ws/{chat_id}`` gets the frame, and a client that reconnects with its last id
  resumes with no gap. A frame the bus cannot take is logged, never raised (the
  transport swallows its errors too). Events that are not JSON-safe are made so.
* ``register_input_request(chat_id, request_id, respond_cb)`` registers locally as before
  and with ``bus.ui``, whose callback answers through the transport's own submit: the
  id it returns is the one both know.
* ``submit_user_input(request_id, text)`` answers locally when this process holds the
  request (as before), else through ``bus.ui.submit_user_input``, which reaches the
  worker that registered it: an input posted to any worker finds its run.

``detach_transport(transport)`` restores the original methods.
"""

from __future__ import annotations

import logging
from typing import Any

from mozaiks_bus.bus import Bus
from mozaiks_bus.errors import MozaiksBusError
from mozaiks_bus.wire import is_json_safe, json_safe

__all__ = ["attach_transport", "detach_transport"]

logger = logging.getLogger("mozaiks_bus.compat")
_ORIGINALS = "_mozaiks_bus_originals"


def _frame(event: Any) -> dict[str, Any] | None:
    """What of ``event`` the bus can send: a kind event or a pre-built envelope."""
    if not isinstance(event, dict):
        return None
    if "kind" in event or ("type" in event and "data" in event):
        if is_json_safe(event):
            return event
        safe: dict[str, Any] = json_safe(event)
        return safe
    return None


def attach_transport(transport: Any, bus: Bus) -> None:
    """Route ``transport``'s UI frames and inputs through ``bus`` too (module docstring)."""
    if hasattr(transport, _ORIGINALS):
        return  # attached already
    send, register, submit = (transport.send_event_to_ui, transport.register_input_request,
                              transport.submit_user_input)
    setattr(transport, _ORIGINALS, (send, register, submit))

    async def send_event_to_ui(event: Any, chat_id: str | None = None) -> None:
        await send(event, chat_id)
        frame = _frame(event)
        if chat_id is None or frame is None:
            return
        try:
            await bus.ui.send(chat_id, frame)
        except MozaiksBusError as exc:
            logger.warning("frame for chat %s not sent through the bus: %s", chat_id, exc)

    def register_input_request(chat_id: str, request_id: Any, respond_cb: Any) -> str:
        used: str = register(chat_id, request_id, respond_cb)

        async def answer(text: str) -> None:
            if not await submit(used, text):
                logger.warning("input %s came through the bus but the transport no longer "
                               "holds it", used)

        bus.ui.register_input_request(chat_id, used, answer)
        return used

    async def submit_user_input(request_id: str, user_input: str) -> bool:
        if await submit(request_id, user_input):
            return True
        return await bus.ui.submit_user_input(request_id, user_input)

    transport.send_event_to_ui = send_event_to_ui
    transport.register_input_request = register_input_request
    transport.submit_user_input = submit_user_input


def detach_transport(transport: Any) -> None:
    """Undo :func:`attach_transport`."""
    originals = getattr(transport, _ORIGINALS, None)
    if originals is None:
        return
    transport.send_event_to_ui, transport.register_input_request, \
        transport.submit_user_input = originals
    delattr(transport, _ORIGINALS)
