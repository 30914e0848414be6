"""A group consumer's housekeeping: heartbeats, reclaiming, sweeping.

Every ``min(consumer_claim_interval_s, consumer_min_idle_s / 3, 1 s)`` it may:

* **touch** the entries this consumer holds (``XCLAIM ... JUSTID``), every third of
  ``consumer_min_idle_s``, so a slow but healthy handler keeps its claim;
* **discover** streams created since (a pattern consumer), every
  ``consumer_claim_interval_s`` (reclaiming what dead consumers left is
  :mod:`.reclaim`'s, in a task of its own so a long walk never delays a touch);
* **sweep**, every minute at most: forget processed ids older than ``processed_ttl_s``
  and remove consumers idle for an hour (or 10 x the min idle) with nothing pending.

A Redis failure in any step is logged and the loop goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, cast

from mozaiks_bus.connection import AsyncClient, text
from mozaiks_bus.connection.redis_errors import REDIS_ERRORS
from mozaiks_bus.durable.held import HeldEntries
from mozaiks_bus.keys import Keys
from mozaiks_bus.settings import BusSettings
from mozaiks_bus.stats import BusStats

__all__ = ["Janitor"]

logger = logging.getLogger("mozaiks_bus.durable.consumer")
SWEEP_INTERVAL_S = 60.0
DEAD_CONSUMER_IDLE_S = 3600.0


class Janitor:
    """Housekeeping of one group consumer (see the module docstring)."""

    def __init__(
        self, client: AsyncClient, keys: Keys, settings: BusSettings, stats: BusStats, *,
        group: str, consumer: str, guard: bool, held: HeldEntries,
        types: Callable[[], Iterable[str]], discover: Callable[[], Awaitable[None]],
    ) -> None:
        self._client = client
        self._keys = keys
        self._settings = settings
        self._stats = stats
        self._group = group
        self._consumer = consumer
        self._guard = guard
        self._held = held
        self._types = types
        self._discover = discover

    async def run(self) -> None:
        """Forever (until cancelled)."""
        interval = self._settings.consumer_claim_interval_s
        touch_every = self._settings.consumer_min_idle_s / 3
        last_touch = last_claim = 0.0
        last_sweep = time.monotonic()
        while True:
            await asyncio.sleep(min(interval, touch_every, 1.0))
            now = time.monotonic()
            try:
                if now - last_touch >= touch_every:
                    last_touch = now
                    await self.touch_held()
                if now - last_claim >= interval:
                    last_claim = now
                    await self._discover()
                if now - last_sweep >= min(SWEEP_INTERVAL_S, self._settings.retention_interval_s):
                    last_sweep = now
                    for type_name in list(self._types()):
                        await self.sweep(type_name)
            except REDIS_ERRORS as exc:
                logger.warning("janitor of %s: %s", self._group, exc)

    async def touch_held(self) -> None:
        """Reset the idle time of every entry this consumer holds."""
        for key, ids in self._held.snapshot():
            await self._client.xclaim(key, self._group, self._consumer, 0, cast(Any, ids),
                                      justid=True)

    async def sweep(self, type_name: str) -> None:
        """Forget old processed ids; remove long-idle consumers with nothing pending
        (dead processes of earlier deploys)."""
        ttl = self._settings.processed_ttl_s
        if self._guard:
            processed = self._keys.processed_ids(self._group, type_name)
            await self._client.zremrangebyscore(processed, "-inf", time.time() - ttl)
            await self._client.expire(processed, int(ttl * 2))
        key = self._keys.stream(type_name)
        idle_limit_ms = int(max(DEAD_CONSUMER_IDLE_S, 10 * self._settings.consumer_min_idle_s)
                            * 1000)
        consumers: Any = await self._client.xinfo_consumers(key, self._group)
        for consumer in consumers:
            name = text(consumer["name"])
            if name != self._consumer and int(consumer["pending"]) == 0 \
                    and int(consumer["idle"]) > idle_limit_ms:
                await self._client.xgroup_delconsumer(key, self._group, name)
