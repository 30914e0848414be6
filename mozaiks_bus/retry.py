"""Retry timing: exponential backoff with full jitter, shared by consumers and sinks.

``delay(attempt)`` for the attempt that just failed (1 = the first delivery) is a
uniform random value in ``[0, min(max_s, base_s * 2 ** (attempt - 1))]`` ("full
jitter", which spreads retries of many failing events so they do not arrive in
lockstep). A server's ``Retry-After`` wins when it asks for longer, capped at
``max_s`` x 2 so a hostile header cannot park a delivery for hours.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from mozaiks_bus.errors import ConfigError

__all__ = ["RetryPolicy"]


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
