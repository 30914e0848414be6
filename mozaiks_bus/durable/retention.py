"""Stream retention that never trims un-acked work without saying so.

Two limits, checked every ``retention_interval_s`` by every process that runs
consumers (trimming is idempotent, so several processes doing it is harmless):

* **Soft** (``stream_max_len`` entries, ``stream_max_age_s`` seconds): entries beyond
  either limit are trimmed (``XTRIM MINID``) only up to what *every* group has
  acknowledged: a group's safe point is its oldest pending entry, or just past its
  last-delivered id when nothing is pending. A stream with no group yet is trimmed
  by the soft limits alone (they bound what a group created later still gets).
* **Hard** (``stream_hard_max_len``): every durable XADD carries ``MAXLEN ~`` this
  many entries, so a stalled group cannot exhaust Redis memory. Entries trimmed that
  way before a group read them are lost: each check compares every group's
  position with the stream's first entry, counts what was lost (``lost_trimmed``) and
  logs an error. (Redis 8.2's ``XADD ... ACKED`` would make the soft rule native; this
  client-side rule gives the same behaviour on the Redis 7 deployed today.)
"""

from __future__ import annotations

import logging
import time
from typing import Any

from mozaiks_bus.connection import AsyncClient, text
from mozaiks_bus.durable.streams import id_millis
from mozaiks_bus.settings import BusSettings
from mozaiks_bus.stats import BusStats

__all__ = ["RetentionKeeper"]

logger = logging.getLogger("mozaiks_bus.durable.retention")
_MAX_TRIM_SCAN = 10_000  # entries looked at per check to find the length cut-off


def _after(entry_id: str) -> str:
    """The smallest id greater than ``entry_id``."""
    millis, _, seq = entry_id.partition("-")
    return f"{millis}-{int(seq or 0) + 1}"


def _older(a: str, b: str) -> bool:
    ams, _, aseq = a.partition("-")
    bms, _, bseq = b.partition("-")
    return (int(ams), int(aseq or 0)) < (int(bms), int(bseq or 0))


class RetentionKeeper:
    """Applies the soft limits and detects losses caused by the hard one."""

    def __init__(self, client: AsyncClient, settings: BusSettings, stats: BusStats) -> None:
        self.client = client
        self.settings = settings
        self.stats = stats
        self.keys = settings.keys
        self._reported: dict[tuple[str, str], str] = {}  # (stream, group) -> first id seen

    async def check_all(self) -> dict[str, int]:
        """Check every durable stream; returns how many entries each trim removed."""
        members = await self.client.smembers(self.keys.stream_index())
        trimmed: dict[str, int] = {}
        for raw in sorted(members):
            type_name = text(raw)
            trimmed[type_name] = await self.check(type_name)
        return trimmed

    async def check(self, type_name: str) -> int:
        """Detect losses on one stream, then trim it to its soft limits; returns removed."""
        key = self.keys.stream(type_name)
        if not await self.client.exists(key):
            return 0
        info: Any = await self.client.xinfo_stream(key)
        groups: Any = await self.client.xinfo_groups(key)
        first = info.get("first-entry")
        first_id = text(first[0]) if first else None
        safe: str | None = None  # entries strictly older than this are acked by all groups
        for group in groups:
            name = text(group["name"])
            last = text(group["last-delivered-id"])
            if first_id is not None:
                self._detect_loss(key, name, last, first_id, info=info, raw=group)
            point = await self._safe_point(key, name, last)
            if safe is None or _older(point, safe):
                safe = point
        limit = await self._limit_point(key, int(info["length"]))
        if limit is None:
            return 0
        threshold = limit if safe is None or _older(limit, safe) else safe
        removed = int(await self.client.xtrim(key, minid=threshold, approximate=False))
        if removed:
            logger.info("trimmed %d acknowledged entries from %s", removed, key)
        return removed

    async def _safe_point(self, key: str, group: str, last_delivered: str) -> str:
        summary: Any = await self.client.xpending(key, group)
        if summary and summary.get("pending"):
            return text(summary["min"])
        return _after(last_delivered)

    async def _limit_point(self, key: str, length: int) -> str | None:
        """Entries older than the returned id break a soft limit (None: none do)."""
        now_ms = int(time.time() * 1000)
        age_cut = f"{max(0, now_ms - int(self.settings.stream_max_age_s * 1000))}-0"
        excess = length - self.settings.stream_max_len
        len_cut: str | None = None
        if excess > 0:
            rows: Any = await self.client.xrange(key, count=min(excess, _MAX_TRIM_SCAN))
            if rows:
                len_cut = _after(text(rows[-1][0]))
        first: Any = await self.client.xrange(key, count=1)
        if not first:
            return None
        cut = age_cut if len_cut is None or _older(len_cut, age_cut) else len_cut
        return cut if _older(text(first[0][0]), cut) else None

    def _detect_loss(
        self, key: str, group: str, last_delivered: str, first_id: str, *, info: Any, raw: Any
    ) -> None:
        """Entries the group never read that are older than the stream's first entry."""
        if last_delivered in {"0", "0-0"}:
            # A group that never read: it may have been created after a legitimate soft
            # trim, which is not a loss. (Documented limit: a group that never read
            # anything is not checked.)
            return
        if not _older(_after(last_delivered), first_id):
            return
        if self._reported.get((key, group)) == first_id:
            return
        self._reported[(key, group)] = first_id
        read = raw.get("entries-read")
        added = int(info.get("entries-added", 0))
        lost = max(1, added - int(read) - int(info["length"])) if read is not None else 1
        self.stats.incr("lost_trimmed", lost)
        logger.error(
            "group %s on %s lost %s unread entries to the hard length cap "
            "(stream_hard_max_len=%d): it is behind the stream's first entry %s (%.0fs old)",
            group, key, lost if read is not None else "some",
            self.settings.stream_hard_max_len, first_id,
            time.time() - id_millis(first_id) / 1000,
        )
