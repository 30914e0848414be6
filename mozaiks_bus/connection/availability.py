"""Waiting for Redis, decided in one place: what every loop does when Redis does not answer.

A process that starts while Redis is unreachable, or loses it later, must not exit: it
waits with backoff, says what it waits for, reports itself not ready, and goes on by
itself when Redis answers again. :class:`Availability` is that policy; every loop and
start path of one bus (the sender, the fan-out listener, consumer readers, consumer
start, the sink worker) reports to the same instance:

* :meth:`Availability.retry` / :meth:`retry_sync` run an operation until it succeeds,
  waiting between attempts (start paths: creating groups, registering sinks);
* :meth:`Availability.pause` is one wait of a loop that retries by itself;
* :meth:`Availability.lost` / :meth:`found` record an outage and its end. The first
  failure of an outage is logged as a warning naming what waits and why, then at most
  once every :data:`REPEAT_LOG_S`; the end is logged once, with how long it lasted.

:meth:`Availability.health` is what readiness reports (``/readyz``, ``bus.health()``):
``up`` is False while anything waits.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from mozaiks_bus.connection.broker_urls import redact_url
from mozaiks_bus.connection.redis_errors import REDIS_ERRORS
from mozaiks_bus.errors import BrokerUnavailable
from mozaiks_bus.retry import Backoff

__all__ = ["REPEAT_LOG_S", "RETRYABLE", "Availability"]

logger = logging.getLogger("mozaiks_bus.connection.availability")
T = TypeVar("T")
REPEAT_LOG_S = 30.0
RETRYABLE: tuple[type[BaseException], ...] = (*REDIS_ERRORS, BrokerUnavailable)
"""What means "Redis cannot serve now, try again": raw redis-py and socket errors, and
their translation."""


class Availability:
    """One process's view of whether Redis answers (thread-safe)."""

    def __init__(self, url: str | None = None) -> None:
        self._where = f" at {redact_url(url)}" if url else ""
        self._lock = threading.Lock()
        self._waiting: dict[str, str] = {}  # what waits -> the last error
        self._down_since: float | None = None
        self._last_log = 0.0

    @property
    def up(self) -> bool:
        """True unless something is waiting for Redis now."""
        return not self._waiting

    def lost(self, what: str, error: BaseException) -> None:
        """``what`` could not reach Redis (logged once an outage, then every 30 s)."""
        now = time.monotonic()
        reason = str(error) or type(error).__name__
        with self._lock:
            first = self._down_since is None
            if first:
                self._down_since = now
            self._waiting[what] = reason
            due = first or now - self._last_log >= REPEAT_LOG_S
            if due:
                self._last_log = now
            waiting = sorted(self._waiting)
        if due:
            logger.warning("waiting for Redis%s (%s): %s", self._where, ", ".join(waiting),
                           reason)

    def found(self, what: str) -> None:
        """``what`` reached Redis again; the outage ends when nothing waits any more."""
        with self._lock:
            if self._waiting.pop(what, None) is None or self._waiting:
                return
            since, self._down_since = self._down_since, None
        if since is not None:
            logger.warning("Redis%s answers again after %.1fs", self._where,
                           time.monotonic() - since)

    async def pause(self, what: str, error: BaseException, backoff: Backoff) -> None:
        """Record the failure of one attempt and wait the caller's next backoff delay."""
        self.lost(what, error)
        await backoff.sleep()

    async def retry(self, operation: Callable[[], Awaitable[T]], *, what: str,
                    backoff: Backoff | None = None) -> T:
        """``await operation()`` until it does not fail for Redis's reasons."""
        backoff = backoff or Backoff(max_s=5.0)
        while True:
            try:
                result = await operation()
            except RETRYABLE as exc:
                await self.pause(what, exc, backoff)
                continue
            self.found(what)
            return result

    def retry_sync(self, operation: Callable[[], T], *, what: str,
                   backoff: Backoff | None = None,
                   stop: threading.Event | None = None) -> T | None:
        """The blocking form of :meth:`retry`; returns None if ``stop`` is set first."""
        backoff = backoff or Backoff(max_s=5.0)
        while stop is None or not stop.is_set():
            try:
                result = operation()
            except RETRYABLE as exc:
                self.lost(what, exc)
                delay = backoff.next_delay()
                if stop is None:
                    time.sleep(delay)
                else:
                    stop.wait(delay)
                continue
            self.found(what)
            return result
        return None

    def health(self) -> dict[str, object]:
        """``redis_up`` and, while down, what waits and for how long."""
        with self._lock:
            since = self._down_since
            waiting = sorted(self._waiting)
        return {
            "redis_up": not waiting,
            "waiting_for": waiting,
            "down_s": None if since is None else round(time.monotonic() - since, 3),
        }
