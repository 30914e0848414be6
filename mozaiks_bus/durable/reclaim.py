"""Taking over what dead consumers of a group left pending, at consume speed.

Contract (what a user gets with the defaults: ``consumer_min_idle_s`` 30 s,
``consumer_claim_interval_s`` 5 s): an entry a crashed consumer held becomes claimable
once it has been idle ``consumer_min_idle_s`` (a live consumer touches what it holds
every third of that time, so only a dead one's entries get there); every
``consumer_claim_interval_s`` a live consumer of the group walks the stream's pending
list with ``XAUTOCLAIM`` from its start, following the cursor to the end, in batches of
its read size, each batch as soon as it has room for it; so every abandoned entry is
handed to a handler within ``consumer_min_idle_s`` + ``consumer_claim_interval_s`` of
the crash, and the rest of the walk goes at the consumer's own handling rate. While a
walk runs the consumer's readers wait, so reclaimed entries (the oldest work) go before
new ones. Entries trimmed while pending are counted as ``lost_pending``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from mozaiks_bus.connection import AsyncClient, text
from mozaiks_bus.connection.redis_errors import REDIS_ERRORS, is_group_vanished
from mozaiks_bus.durable._permits import Permits
from mozaiks_bus.durable.held import HeldEntries
from mozaiks_bus.keys import Keys
from mozaiks_bus.settings import BusSettings
from mozaiks_bus.stats import BusStats

__all__ = ["Reclaimer"]

logger = logging.getLogger("mozaiks_bus.durable.consumer")
# type, key, entries, their delivery counts
StartHandlers = Callable[[str, str, list[Any], list[int]], Awaitable[None]]
_CURSOR_END = "0-0"


class Reclaimer:
    """Reclaims for one group consumer (see the module docstring)."""

    def __init__(
        self, client: AsyncClient, keys: Keys, settings: BusSettings, stats: BusStats, *,
        group: str, consumer: str, held: HeldEntries, permits: Permits, batch: int,
        types: Callable[[], Iterable[str]], reclaimed: StartHandlers,
        recreate_group: Callable[[str], Awaitable[None]],
    ) -> None:
        self._client = client
        self._keys = keys
        self._settings = settings
        self._stats = stats
        self._group = group
        self._consumer = consumer
        self._held = held
        self._permits = permits
        self._batch = max(1, batch)
        self._types = types
        self._reclaimed = reclaimed
        self._recreate_group = recreate_group

    async def run(self) -> None:
        """Every ``consumer_claim_interval_s``, walk each stream (until cancelled)."""
        while True:
            await asyncio.sleep(self._settings.consumer_claim_interval_s)
            for type_name in list(self._types()):
                try:
                    await self.claim_abandoned(type_name)
                except REDIS_ERRORS as exc:
                    logger.warning("reclaiming %s for %s: %s", type_name, self._group, exc)

    async def claim_abandoned(self, type_name: str) -> int:
        """Walk ``type_name``'s pending list once, taking over every entry idle past
        the min-idle time and starting its handler; returns how many were taken."""
        key = self._keys.stream(type_name)
        cursor, total = "0-0", 0
        self._permits.claiming += 1
        try:
            while True:
                await self._permits.available(self._batch)
                taken = self._permits.try_take(self._batch)
                try:
                    cursor, mine, counts = await self._claim(key, cursor, taken)
                except BaseException:
                    self._permits.give(taken)
                    raise
                self._permits.give(taken - len(mine))
                if mine:
                    total += len(mine)
                    self._stats.incr("reclaimed", len(mine))
                    await self._reclaimed(type_name, key, mine, counts)
                if cursor == _CURSOR_END:
                    return total
        finally:
            self._permits.claiming -= 1
            self._permits.wake()

    async def _claim(self, key: str, cursor: str, count: int
                     ) -> tuple[str, list[Any], list[int]]:
        """One ``XAUTOCLAIM`` and, in the same round trip, ``XPENDING`` of this
        consumer's entries from the cursor on (Redis's delivery counts, which the claim
        just raised): the next cursor, the entries taken that this consumer did not hold
        already, and their delivery counts."""
        min_idle_ms = int(self._settings.consumer_min_idle_s * 1000)
        pipe = self._client.pipeline(transaction=False)
        pipe.xautoclaim(key, self._group, self._consumer, min_idle_ms, cursor, count=count)
        # this consumer's own entries from the cursor on: the ones just claimed, unless
        # entries it already held sort among them (asked for again below)
        pipe.xpending_range(key, self._group, cursor, "+", count, consumername=self._consumer)
        try:
            reply, rows = await pipe.execute()
        except REDIS_ERRORS as exc:
            if is_group_vanished(exc):
                await self._recreate_group(key)
                return _CURSOR_END, [], []
            raise
        claimed, deleted = reply[1], (reply[2] if len(reply) > 2 else [])
        if deleted:
            self._stats.incr("lost_pending", len(deleted))
            logger.error("%d entries pending in %s for %s were trimmed or deleted: lost",
                         len(deleted), key, self._group)
        mine = [(eid, fields) for eid, fields in claimed if not self._held.holds(key, text(eid))]
        found = _counts(rows)
        missing = [text(eid) for eid, _ in mine if text(eid) not in found]
        if missing:
            found.update(_counts(await self._client.xpending_range(
                key, self._group, missing[0], missing[-1],
                len(missing) + self._held.count(key), consumername=self._consumer)))
        return text(reply[0]), mine, [found.get(text(eid), 1) for eid, _ in mine]


def _counts(rows: list[Any]) -> dict[str, int]:
    """``XPENDING`` rows as entry id -> Redis's delivery count."""
    return {text(row["message_id"]): int(row["times_delivered"]) for row in rows}
