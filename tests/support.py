"""Helpers every test module shares (one copy each): waiting for a condition, a bus on a
test's own prefix, the fast durable timings, a clean MOZAIKS_* environment."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

from mozaiks_bus import Bus, load_settings

__all__ = ["FAST", "clean_env", "make_bus", "wait_for", "wait_until"]

FAST: dict[str, Any] = {
    "consumer_min_idle_s": 1.0, "consumer_claim_interval_s": 0.2, "consumer_block_ms": 100,
    "health_check_interval_s": 0.5,
}
"""Durable and fan-out timings short enough for tests (reclaim after 1 s, a dead link
noticed within 1 s)."""


def make_bus(url: str, prefix: str, **settings: Any) -> Bus:
    """A bus on ``url`` under the test's ``prefix``, with :data:`FAST` unless overridden."""
    return Bus(config=load_settings(broker_url=url, prefix=prefix, **{**FAST, **settings}))


async def wait_for(predicate: Callable[[], Any], timeout: float, what: str,
                   every: float = 0.02) -> None:
    """Await until ``predicate()`` is true; AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(every)


def wait_until(predicate: Callable[[], Any], timeout: float, what: str,
               every: float = 0.05) -> None:
    """The blocking form of :func:`wait_for` (for code without a loop)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any MOZAIKS_* variable, plus ``extra``
    (for child processes a test starts)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOZAIKS_")}
    env.update(extra or {})
    return env
