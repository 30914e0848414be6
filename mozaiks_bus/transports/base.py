"""The transport seam: everything the bus needs from whatever carries events.

A :class:`Transport` carries the fan-out scope itself and offers the other two remote
scopes as capabilities, so an injected transport replaces the whole Redis side of a bus
(no casts, no side doors):

* ``ui``: a :class:`UiTransport` (per-chat history + live channel, input routing);
  every transport has one (the local one keeps history in this process);
* ``streams``: the Redis clients of the durable scope, or None when the transport has
  no durable streams (consumers are then plain local subscribers);
* ``availability``: the one :class:`~mozaiks_bus.connection.availability.Availability` its loops,
  and the bus's durable consumers, report Redis outages to.

Implementations import this module and the core only; the bus never names one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from mozaiks_bus.connection import StreamClients
from mozaiks_bus.connection.availability import Availability
from mozaiks_bus.event import Event
from mozaiks_bus.keys import KeyMark
from mozaiks_bus.routing import Scope

__all__ = [
    "ControlHandler",
    "FrameHandler",
    "GapHandler",
    "RemoteDeliver",
    "RouteResult",
    "Transport",
    "UiTransport",
]

RemoteDeliver = Callable[[Event], None]
FrameHandler = Callable[[str, str], None]  # (frame id, frame JSON)
ControlHandler = Callable[[str], None]  # a routed message (JSON) for this process
GapHandler = Callable[[], None]  # the live link was lost and is back: frames may be missing
RouteResult = Literal["here", "sent", "unclaimed"]


@runtime_checkable
class UiTransport(Protocol):
    """Carries the ui scope: a chat's frames to every process that follows it, and
    one-shot messages (inputs, tool responses) to the process that claimed them."""

    async def append(self, chat_id: str, frame: str) -> str:
        """Add ``frame`` to the chat's history and deliver it live, as one atomic step
        (ids are in history order); returns its frame id."""

    async def follow(self, chat_id: str, on_frame: FrameHandler,
                     on_gap: GapHandler | None = None) -> None:
        """Deliver the chat's live frames to ``on_frame`` (on the bus loop); returns once
        the subscription is confirmed, so history read after it leaves no gap. Raises
        :class:`~mozaiks_bus.errors.BrokerUnavailable` if it cannot be confirmed.
        ``on_gap()`` is called (on the bus loop) when the live link was lost and is
        confirmed again: frames published meanwhile were not delivered live."""

    def unfollow(self, chat_id: str) -> None:
        """Stop delivering the chat's live frames."""

    async def history(self, chat_id: str) -> list[tuple[str, str]]:
        """The chat's history, oldest first, as ``(frame id, frame)``."""

    async def claim(self, name: str, ttl_s: int, on_message: ControlHandler) -> None:
        """Make this process the owner of ``name`` for ``ttl_s``: a :meth:`route` to it
        from any process reaches ``on_message`` here."""

    async def route(self, name: str, message: str) -> RouteResult:
        """Send ``message`` to the owner of ``name``, taking the claim (one-shot):
        ``here`` (the owner is this process; the caller handles it), ``sent``, or
        ``unclaimed`` (no owner, or the owner is gone)."""


@runtime_checkable
class Transport(Protocol):
    """Carries events to other processes for the fan-out, durable and ui scopes."""

    @property
    def remote(self) -> bool:
        """Whether events really leave this process."""

    @property
    def ui(self) -> UiTransport:
        """The ui scope's carrier."""

    @property
    def streams(self) -> StreamClients | None:
        """The durable scope's Redis clients (None: no durable streams here)."""

    @property
    def availability(self) -> Availability:
        """Whether the broker answers, as every loop of this transport reports it."""

    async def start(self, deliver: RemoteDeliver) -> None:
        """Connect; ``deliver`` is called (on the bus loop) for each remote event."""

    async def stop(self) -> None:
        """Flush what can be flushed within the bus's drain timeout, then disconnect."""

    def subscribe(self, pattern: str) -> None:
        """Start receiving fan-out events matching ``pattern`` (reference-counted)."""

    def unsubscribe(self, pattern: str) -> None:
        """Release one reference taken by :meth:`subscribe`."""

    def publish_nowait(self, event: Event, scopes: Scope, payload: str) -> None:
        """Queue ``event`` for sending; never blocks, never raises (drops are counted)."""

    async def publish(self, event: Event, scopes: Scope, payload: str, *,
                      min_replicas: int = 0) -> None:
        """Send/store ``event`` and return once the broker took it, else raise; a
        transport that waits on a broker raises TimeoutError after the settings'
        ``publish_timeout_s`` (the bus turns it into PublishFailed). ``min_replicas``:
        return only once that many replicas have the write, else raise PublishFailed
        (for every publish method)."""

    async def publish_atomic(self, items: Sequence[tuple[Event, Scope, str]],
                             marks: Sequence[KeyMark] = (), *, min_replicas: int = 0) -> None:
        """Send several events as one all-or-nothing unit, with ``marks`` (keys set in
        the same unit); raise if not stored (bounded like :meth:`publish`)."""

    async def publish_once(self, items: Sequence[tuple[Event, Scope, str]],
                           marks: Sequence[KeyMark], *, min_replicas: int = 0) -> list[Any]:
        """Store each event whose mark key (``marks[i]``) is empty and set the mark, as
        one atomic step; store nothing if a key holds a value other than its mark's.
        Returns per event ``1`` (stored now) or the value found."""

    async def execute(self, command: tuple[Any, ...]) -> Any:
        """Run one broker command in the sender's next pipeline (shared with concurrent
        calls) and return its reply; raise like :meth:`publish` (bounded the same way)."""

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until what ``publish_nowait`` buffered was sent or dropped."""

    def health(self) -> dict[str, object]:
        """Connection state for readiness probes and metrics."""
