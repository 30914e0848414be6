"""Forwarding the AI runtime's dispatcher events (``UnifiedEventDispatcher``) to a bus."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from mozaiks_bus.bus import Bus
from mozaiks_bus.compat.runtime_bus import subject_of
from mozaiks_bus.errors import MozaiksBusError
from mozaiks_bus.event import validate_type

__all__ = ["attach_dispatcher"]

logger = logging.getLogger("mozaiks_bus.compat")


class _Dispatcher(Protocol):
    def register_handler(self, handler_or_event_type: Any, handler: Any = None) -> None: ...


def attach_dispatcher(
    dispatcher: _Dispatcher,
    bus: Bus,
    events: Iterable[str] = ("chat.usage_summary", "chat.run_complete"),
) -> list[Callable[[dict[str, Any]], None]]:
    """Forward the dispatcher's string-keyed events to ``bus`` (never blocks a run).

    Registers one sync handler per event through ``dispatcher.register_handler(name,
    handler)``; each calls ``bus.emit`` (which never blocks) with the chat id as
    subject, and logs instead of raising when an event is invalid. Returns the handlers.
    """
    handlers: list[Callable[[dict[str, Any]], None]] = []
    for name in events:
        validate_type(name)
        handler = _forwarder(bus, name)
        dispatcher.register_handler(name, handler)
        handlers.append(handler)
    return handlers


def _forwarder(bus: Bus, name: str) -> Callable[[dict[str, Any]], None]:
    def forward(payload: dict[str, Any]) -> None:
        try:
            bus.emit(name, payload, subject=subject_of(name, payload))
        except MozaiksBusError as exc:
            logger.warning("not forwarding %s to the bus: %s", name, exc)

    forward.__name__ = f"forward_{name.replace('.', '_')}_to_bus"
    return forward
