"""The kinds of item the sender writes, one type each.

* :class:`EventItem`: one event at its scopes (``publish``, ``emit``);
* :class:`FrameItem`: a bare UI frame for one chat (``bus.ui.send``);
* :class:`AtomicItem`: events and dedupe marks in one ``MULTI``/``EXEC``
  (``publish_atomic``);
* :class:`CommandItem`: one raw command (``Transport.execute``), with the events a
  script stores when it is one (``publish_once``).

Each carries the future its caller awaits (None for an emitted event: nobody waits) and,
for a confirmed write, how many replicas must have it before the caller is told
(``min_replicas``: the batch then ends with ``WAIT``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from mozaiks_bus.event import Event
from mozaiks_bus.keys import KeyMark
from mozaiks_bus.routing import Scope

__all__ = ["AtomicItem", "CommandItem", "EventItem", "FrameItem", "Outgoing"]


@dataclass(slots=True)
class EventItem:
    """One event: its wire JSON and the scopes it takes."""

    event: Event
    scopes: Scope
    payload: str  # the CloudEvent JSON
    future: asyncio.Future[Any] | None = None
    stored: bool = False  # set by the command builder: this item's commands hold an XADD
    min_replicas: int = 0


@dataclass(slots=True)
class FrameItem:
    """A bare UI frame appended to one chat's history and published to its channel."""

    chat_id: str
    frame: str  # the frame JSON
    future: asyncio.Future[Any] | None = None
    min_replicas: int = 0


@dataclass(slots=True)
class AtomicItem:
    """Events stored all or none, with keys set before the EXEC (``marks``)."""

    members: list[EventItem]
    marks: tuple[KeyMark, ...] = ()
    future: asyncio.Future[Any] | None = None
    min_replicas: int = 0


@dataclass(slots=True)
class CommandItem:
    """One raw command; ``stores`` are the events a store-if-new script writes (their
    reply entry is ``1`` where the script stored the event)."""

    command: tuple[Any, ...]
    future: asyncio.Future[Any] | None = None
    stores: tuple[EventItem, ...] = field(default=())
    min_replicas: int = 0


Outgoing = EventItem | FrameItem | AtomicItem | CommandItem
"""Anything the sender takes."""
