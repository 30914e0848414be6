"""The transport seam: what the bus needs from whatever carries events between processes.

A transport is chosen by URL scheme (``redis://``, ``rediss://``, ``unix://``,
``redis+sentinel://``, ``memory://``) or injected directly (tests skip URL parsing).
No URL means :class:`LocalTransport`: remote scopes are decided by the routing table
but go nowhere, so the library needs nothing but Python.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from mozaiks_bus.event import Event
from mozaiks_bus.routing import Scope

__all__ = ["LocalTransport", "RemoteDeliver", "Transport", "create_transport"]

RemoteDeliver = Callable[[Event], None]


@runtime_checkable
class Transport(Protocol):
    """Carries events to other processes for the fan-out, durable and ui scopes."""

    @property
    def remote(self) -> bool:
        """Whether events really leave this process."""

    async def start(self, deliver: RemoteDeliver) -> None:
        """Connect; ``deliver`` is called (on the bus loop) for each remote event."""

    async def stop(self) -> None:
        """Flush what can be flushed within the bus's drain timeout, then disconnect."""

    def watch(self, pattern: str) -> None:
        """Start receiving fan-out events matching ``pattern`` (reference-counted)."""

    def unwatch(self, pattern: str) -> None:
        """Release one reference taken by :meth:`watch`."""

    def send_nowait(self, event: Event, payload: str, scopes: Scope) -> None:
        """Queue ``event`` for sending; never blocks, never raises (drops are counted)."""

    async def send(self, event: Event, payload: str, scopes: Scope) -> None:
        """Send/store ``event`` and return once the broker took it, else raise."""

    async def send_atomic(self, items: Sequence[tuple[Event, Scope, str]]) -> None:
        """Send several events as one all-or-nothing unit; raise if not stored."""

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until what ``send_nowait`` buffered was sent or dropped."""

    def health(self) -> dict[str, object]:
        """Connection state for readiness probes and metrics."""


class LocalTransport:
    """No broker: remote scopes are no-ops (local delivery still happens)."""

    remote = False

    async def start(self, deliver: RemoteDeliver) -> None:
        """Nothing to connect."""

    async def stop(self) -> None:
        """Nothing to disconnect."""

    def watch(self, pattern: str) -> None:
        """No remote events exist."""

    def unwatch(self, pattern: str) -> None:
        """No remote events exist."""

    def send_nowait(self, event: Event, payload: str, scopes: Scope) -> None:
        """Local only: nothing leaves the process."""

    async def send(self, event: Event, payload: str, scopes: Scope) -> None:
        """Local only: nothing leaves the process."""

    async def send_atomic(self, items: Sequence[tuple[Event, Scope, str]]) -> None:
        """Local only: nothing leaves the process."""

    async def flush(self, timeout: float | None = None) -> bool:
        """Nothing is ever buffered."""
        return True

    def health(self) -> dict[str, object]:
        """Always healthy: there is nothing to be unhealthy about."""
        return {"transport": "local", "connected": True}


def create_transport(url: str | None, **options: object) -> Transport:
    """The transport for ``url`` (None: local only)."""
    if url is None or url == "":
        return LocalTransport()
    from mozaiks_bus.transports.redis import RedisTransport  # noqa: PLC0415  # imported lazily

    return RedisTransport(url, **options)  # type: ignore[arg-type]
