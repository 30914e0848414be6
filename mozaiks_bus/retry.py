"""Retry timing, for every loop that retries: deliveries and reconnects.

:class:`RetryPolicy` times the retries of one delivery (consumers, sinks);
:class:`Backoff` times a loop that reconnects or re-reads after Redis failed (sender,
listener, consumer readers), reset by the next success.


``delay(attempt)`` for the attempt that just failed (1 = the first delivery) is a
uniform random value in ``[0, min(max_s, base_s * 2 ** (attempt - 1))]`` ("full
jitter", which spreads retries of many failing events so they do not arrive in
lockstep). A server's ``Retry-After`` wins when it asks for longer, capped at
``max_s`` x 2 so a hostile header cannot park a delivery for hours.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

from mozaiks_bus.errors import ConfigError

__all__ = ["Backoff", "RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter between ``0`` and ``max_s``."""

    base_s: float = 0.5
    max_s: float = 30.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if not self.base_s >= 0:
            raise ConfigError("retry.base_s", "must be >= 0")
        if not self.max_s >= self.base_s:
            raise ConfigError("retry.max_s", "must be >= retry.base_s")

    def ceiling(self, attempt: int) -> float:
        """The largest delay after failed attempt number ``attempt`` (1-based)."""
        exponent = min(max(attempt, 1) - 1, 32)
        return float(min(self.max_s, self.base_s * 2**exponent))

    def delay(self, attempt: int, *, retry_after: float | None = None) -> float:
        """Seconds to wait before the next attempt."""
        ceiling = self.ceiling(attempt)
        chosen = random.uniform(0, ceiling) if self.jitter else ceiling  # noqa: S311
        if retry_after is not None and retry_after > chosen:
            chosen = min(retry_after, self.max_s * 2)
        return chosen


class Backoff:
    """Delays of a reconnect loop: doubling from ``min_s`` up to ``max_s``, each drawn
    from its upper half (so many processes do not retry in lockstep, yet none retries
    at once); :meth:`reset` after a success."""

    __slots__ = ("_next", "max_s", "min_s")

    def __init__(self, min_s: float = 0.05, max_s: float = 2.0) -> None:
        if not 0 < min_s <= max_s:
            raise ConfigError("backoff", "needs 0 < min_s <= max_s")
        self.min_s = min_s
        self.max_s = max_s
        self._next = min_s

    def next_delay(self) -> float:
        """The delay before the next try; the one after it is twice as long (capped)."""
        ceiling = self._next
        self._next = min(ceiling * 2, self.max_s)
        return ceiling * (0.5 + random.random() / 2)  # noqa: S311  # timing, not secrecy

    def reset(self) -> bool:
        """Start again from ``min_s`` (call after a success); returns whether it had
        backed off (so a caller can tell a recovery from a plain success)."""
        backed_off = self._next != self.min_s
        self._next = self.min_s
        return backed_off

    async def sleep(self) -> float:
        """Sleep for :meth:`next_delay`; returns how long."""
        delay = self.next_delay()
        await asyncio.sleep(delay)
        return delay
