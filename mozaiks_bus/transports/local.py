"""No broker: the transport of a bus that stays in this process.

Remote scopes are decided by the routing table but go nowhere (local delivery still
happens), so the library needs nothing but Python. The ui scope still works within the
process: :class:`LocalUi` keeps each chat's bounded history in memory and delivers to
the followers here, and every claim is this process's.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from mozaiks_bus.connection import StreamClients
from mozaiks_bus.connection.availability import Availability
from mozaiks_bus.errors import ConfigError
from mozaiks_bus.event import Event
from mozaiks_bus.keys import KeyMark
from mozaiks_bus.routing import Scope
from mozaiks_bus.transports.base import (
    ControlHandler,
    FrameHandler,
    GapHandler,
    RemoteDeliver,
    RouteResult,
)

__all__ = ["LocalTransport", "LocalUi"]

DEFAULT_HISTORY_MAX_LEN = 1000


class LocalUi:
    """The ui scope within one process: in-memory history, followers called inline."""

    def __init__(self, history_max_len: int = DEFAULT_HISTORY_MAX_LEN) -> None:
        self._max_len = history_max_len
        self._history: dict[str, deque[tuple[str, str]]] = {}
        self._followers: dict[str, FrameHandler] = {}
        self._ids = itertools.count(1)

    async def append(self, chat_id: str, frame: str) -> str:
        """Keep ``frame`` in the chat's history and hand it to its follower."""
        frame_id = f"{int(time.time() * 1000)}-{next(self._ids)}"
        history = self._history.setdefault(chat_id, deque(maxlen=self._max_len))
        history.append((frame_id, frame))
        follower = self._followers.get(chat_id)
        if follower is not None:
            follower(frame_id, frame)
        return frame_id

    async def follow(self, chat_id: str, on_frame: FrameHandler,
                     on_gap: GapHandler | None = None) -> None:
        """Live frames of ``chat_id`` go to ``on_frame`` from now on (inline: there is no
        link to lose, so ``on_gap`` is never called)."""
        self._followers[chat_id] = on_frame

    def unfollow(self, chat_id: str) -> None:
        """Stop delivering ``chat_id``'s live frames."""
        self._followers.pop(chat_id, None)

    async def history(self, chat_id: str) -> list[tuple[str, str]]:
        """The chat's history, oldest first."""
        return list(self._history.get(chat_id, ()))

    async def claim(self, name: str, ttl_s: int, on_message: ControlHandler) -> None:
        """Every claim is this process's: nothing to record."""

    async def route(self, name: str, message: str) -> RouteResult:
        """The owner is always this process."""
        return "here"


class LocalTransport:
    """No broker: remote scopes are no-ops (local delivery still happens)."""

    remote = False
    streams: StreamClients | None = None

    def __init__(self, *, history_max_len: int = DEFAULT_HISTORY_MAX_LEN) -> None:
        self.ui = LocalUi(history_max_len)
        self.availability = Availability()  # nothing to wait for: always up

    async def start(self, deliver: RemoteDeliver) -> None:
        """Nothing to connect."""

    async def stop(self) -> None:
        """Nothing to disconnect."""

    def subscribe(self, pattern: str) -> None:
        """No remote events exist."""

    def unsubscribe(self, pattern: str) -> None:
        """No remote events exist."""

    def publish_nowait(self, event: Event, scopes: Scope, payload: str) -> None:
        """Local only: nothing leaves the process."""

    async def publish(self, event: Event, scopes: Scope, payload: str, *,
                      min_replicas: int = 0) -> None:
        """Local only: nothing leaves the process."""

    async def publish_atomic(self, items: Sequence[tuple[Event, Scope, str]],
                             marks: Sequence[KeyMark] = (), *, min_replicas: int = 0) -> None:
        """Local only: nothing leaves the process."""

    async def publish_once(self, items: Sequence[tuple[Event, Scope, str]],
                           marks: Sequence[KeyMark], *, min_replicas: int = 0) -> list[Any]:
        """There is no broker to dedupe on."""
        raise ConfigError("broker_url", "publishing once by key needs a broker (redis://...)")

    async def execute(self, command: tuple[Any, ...]) -> Any:
        """There is no broker to run ``command`` on."""
        raise ConfigError("broker_url", f"{command[0]} needs a broker (redis://...)")

    async def flush(self, timeout: float | None = None) -> bool:
        """Nothing is ever buffered."""
        return True

    def health(self) -> dict[str, object]:
        """Always healthy: there is nothing to be unhealthy about."""
        return {"transport": "local", "connected": True}
