"""The retry timer of a group consumer: a failed delivery runs again after its backoff.

A retry does not hold up the entries behind it: the entry stays pending (and held, so
heartbeats keep its claim) while it waits. When it is due the timer takes a permit and
claims the entry again (``XCLAIM``, which also counts the delivery); an entry that is
gone meanwhile (trimmed, or acked by a replayed copy) is released. A Redis failure
postpones the retry by a second.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from mozaiks_bus._loop import wait_set
from mozaiks_bus.connection import AsyncClient
from mozaiks_bus.connection.redis_errors import REDIS_ERRORS
from mozaiks_bus.durable._permits import Permits
from mozaiks_bus.durable.held import HeldEntries
from mozaiks_bus.durable.settle import Entry

__all__ = ["RetryTimer"]

logger = logging.getLogger("mozaiks_bus.durable.consumer")
POSTPONE_S = 1.0


class RetryTimer:
    """Due retries of one group consumer, in due order."""

    def __init__(self, client: AsyncClient, *, group: str, consumer: str, held: HeldEntries,
                 permits: Permits, delivery_count: Callable[[str, str], Awaitable[int]],
                 run: Callable[[Entry, int], None]) -> None:
        self._client = client
        self._group = group
        self._consumer = consumer
        self._held = held
        self._permits = permits
        self._delivery_count = delivery_count
        self._run = run  # hands a claimed entry and its delivery count to a worker
        self._due: list[tuple[float, str, str, str]] = []  # (due, type, key, id)
        self._wake = asyncio.Event()

    def schedule(self, entry: Entry, delay: float) -> None:
        """Run ``entry`` again in ``delay`` seconds."""
        heapq.heappush(self._due, (time.monotonic() + delay, entry.type_name, entry.key,
                                   entry.sid))
        self._wake.set()

    async def run(self) -> None:
        """Forever (until cancelled)."""
        while True:
            if not self._due:
                self._wake.clear()
                await self._wake.wait()
                continue
            due, type_name, key, sid = self._due[0]
            wait = due - time.monotonic()
            if wait > 0:
                self._wake.clear()
                await wait_set(self._wake, wait)
                continue
            heapq.heappop(self._due)
            await self._permits.take(1)
            try:
                claimed: Any = await self._client.xclaim(key, self._group, self._consumer, 0,
                                                         [sid])
            except REDIS_ERRORS as exc:
                self._permits.give()
                logger.warning("retry of %s %s postponed: %s", key, sid, exc)
                heapq.heappush(self._due, (time.monotonic() + POSTPONE_S, type_name, key, sid))
                continue
            if not claimed or claimed[0][1] is None:
                self._permits.give()
                self._held.release(key, sid)
                continue
            deliveries = await self._delivery_count(key, sid)
            self._run(Entry(type_name, key, sid, claimed[0][1]), deliveries)
