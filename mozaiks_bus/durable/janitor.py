"""A group consumer's housekeeping: heartbeats, reclaiming, sweeping.

Every ``min(consumer_claim_interval_s, consumer_min_idle_s / 3, 1 s)`` it may:

* **touch** the entries this consumer holds (``XCLAIM ... JUSTID``), every third of
  ``consumer_min_idle_s``, so a slow but healthy handler keeps its claim;
* **discover** streams created since (a pattern consumer) and **reclaim**
  (``XAUTOCLAIM``) entries a dead consumer left pending longer than
  ``consumer_min_idle_s``, every ``consumer_claim_interval_s``; entries trimmed while
  pending are counted as ``lost_pending``;
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
from mozaiks_bus.durable._permits import Permits
from mozaiks_bus.durable.settle import HeldEntries
from mozaiks_bus.keys import Keys
from mozaiks_bus.redis_errors import REDIS_ERRORS, is_group_vanished
from mozaiks_bus.settings import BusSettings
from mozaiks_bus.stats import BusStats

__all__ = ["Janitor"]

logger = logging.getLogger("mozaiks_bus.durable.consumer")
SWEEP_INTERVAL_S = 60.0
DEAD_CONSUMER_IDLE_S = 3600.0
StartHandlers = Callable[[str, str, list[Any]], Awaitable[None]]  # type, key, entries


class Janitor:
    """Housekeeping of one group consumer (see the module docstring)."""

    def __init__(
        self, client: AsyncClient, keys: Keys, settings: BusSettings, stats: BusStats, *,
        group: str, consumer: str, guard: bool, held: HeldEntries, permits: Permits,
        claim_batch: int, types: Callable[[], Iterable[str]],
        discover: Callable[[], Awaitable[None]], reclaimed: StartHandlers,
        recreate_group: Callable[[str], Awaitable[None]],
    ) -> None:
        self._client = client
        self._keys = keys
        self._settings = settings
        self._stats = stats
        self._group = group
        self._consumer = consumer
        self._guard = guard
        self._held = held
        self._permits = permits
        self._claim_batch = claim_batch
        self._types = types
        self._discover = discover
        self._reclaimed = reclaimed
        self._recreate_group = recreate_group

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
                    for type_name in list(self._types()):
                        await self.claim_abandoned(type_name)
                if now - last_sweep >= min(SWEEP_INTERVAL_S, self._settings.retention_interval_s):
                    last_sweep = now
                    for type_name in list(self._types()):
                        await self.sweep(type_name)
            except REDIS_ERRORS as exc:
                logger.warning("janitor of %s: %s", self._group, exc)

    async def touch_held(self) -> None:
        """Reset the idle time of every entry this consumer holds."""
        for key, ids in list(self._held.items()):
            if ids:
                await self._client.xclaim(key, self._group, self._consumer, 0,
                                          cast(Any, sorted(ids)), justid=True)

    async def claim_abandoned(self, type_name: str) -> None:
        """XAUTOCLAIM entries idle past the min-idle time and start handling them."""
        key = self._keys.stream(type_name)
        taken = self._permits.try_take(self._claim_batch)
        if taken == 0:
            return
        min_idle_ms = int(self._settings.consumer_min_idle_s * 1000)
        try:
            reply: Any = await self._client.xautoclaim(key, self._group, self._consumer,
                                                       min_idle_ms, "0-0", count=taken)
        except BaseException as exc:
            self._permits.give(taken)
            if isinstance(exc, Exception) and is_group_vanished(exc):
                await self._recreate_group(key)
                return
            raise
        claimed, deleted = reply[1], (reply[2] if len(reply) > 2 else [])
        if deleted:
            self._stats.incr("lost_pending", len(deleted))
            logger.error("%d entries pending in %s for %s were trimmed or deleted: lost",
                         len(deleted), key, self._group)
        held = self._held.get(key, set())
        mine = [(eid, fields) for eid, fields in claimed if text(eid) not in held]
        if mine:
            self._stats.incr("reclaimed", len(mine))
            await self._reclaimed(type_name, key, mine)
        self._permits.give(taken - len(mine))

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
