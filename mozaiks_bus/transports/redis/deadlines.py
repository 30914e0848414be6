"""One timer for many waits that share a timeout (the sender's bounded confirms).

``asyncio.timeout`` per awaited publish arms and cancels a timer each time, about a
fifth of a publish's cost at high rates. Every bounded item has the same timeout, so
the deadlines arrive in order: one timer, armed for the oldest, serves them all.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

__all__ = ["SharedDeadline"]


class SharedDeadline:
    """Fails each watched future with TimeoutError ``timeout_s`` after it was watched,
    unless it finished first. One loop; not thread-safe."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._waiting: deque[tuple[float, asyncio.Future[Any]]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, future: asyncio.Future[Any]) -> None:
        """Start the clock for ``future`` (on the running loop)."""
        loop = asyncio.get_running_loop()
        waiting = self._waiting
        while waiting and waiting[0][1].done():  # answered: forget it now, not at expiry
            waiting.popleft()
        waiting.append((loop.time() + self.timeout_s, future))
        if self._timer is None:
            self._timer = loop.call_at(self._waiting[0][0], self._expire, loop)

    @property
    def watched(self) -> int:
        """Futures still held (the answered ones at the front are dropped as new ones
        come, so this stays near the number in flight)."""
        return len(self._waiting)

    def cancel(self) -> None:
        """Stop watching everything (the futures are left as they are)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._waiting.clear()

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        waiting = self._waiting
        while waiting and (waiting[0][1].done() or waiting[0][0] <= now):
            _, future = waiting.popleft()
            if not future.done():
                future.set_exception(TimeoutError())
        self._timer = loop.call_at(waiting[0][0], self._expire, loop) if waiting else None
