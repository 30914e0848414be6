"""Settling a delivery: ack, guarded ack (exactly-once effects), dead letter.

* A plain ack is batched: the acks of one loop turn go out as one XACK per stream. The
  entry stays held (heartbeats keep its claim) until its XACK is sent; if that fails the
  entry stays pending and is redelivered: at least once.
* An ack with effects (``delivery.tx``) commits them and the XACK in one MULTI.
* A guarded ack (``guard=True``) also records the event id as processed, WATCHing the
  processed set so that two copies of one id handled at once commit once.
* A dead letter is written to the type's dead-letter stream and the source entry acked
  in one MULTI (both keys share the type's hash tag).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from mozaiks_bus.connection import AsyncClient
from mozaiks_bus.connection.redis_errors import REDIS_ERRORS
from mozaiks_bus.connection.transactions import Command, commit_unless, multi_exec
from mozaiks_bus.durable.held import HeldEntries
from mozaiks_bus.durable.streams import dead_letter_fields, decode_entry
from mozaiks_bus.errors import InvalidEvent
from mozaiks_bus.keys import ENTRY_EVENT, Keys
from mozaiks_bus.partitions import base_type
from mozaiks_bus.stats import BusStats

__all__ = ["Entry", "Settler"]

logger = logging.getLogger("mozaiks_bus.durable.consumer")


@dataclass(frozen=True, slots=True)
class Entry:
    """One stream entry as read: where it is and what it holds."""

    type_name: str  # the stream name: the type, or one partition of it
    key: str
    sid: str
    fields: dict[bytes, bytes] | None

    @property
    def base_type(self) -> str:
        """The event type the entry's stream holds."""
        return base_type(self.type_name)


class Settler:
    """Acks and dead letters of one group consumer."""

    def __init__(self, client: AsyncClient, keys: Keys, *, group: str, consumer: str,
                 stats: BusStats, held: HeldEntries) -> None:
        self._client = client
        self._keys = keys
        self._group = group
        self._consumer = consumer
        self._stats = stats
        self._held = held
        self._pending: dict[str, list[str]] = {}
        self._flushing: asyncio.Task[None] | None = None

    def ack_later(self, key: str, sid: str) -> None:
        """Ack in this loop turn's batch; the entry is released once the XACK is sent."""
        self._pending.setdefault(key, []).append(sid)
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let the acks of this loop turn gather
        while self._pending:
            batch, self._pending = self._pending, {}
            for key, ids in batch.items():
                try:
                    await self._client.xack(key, self._group, *ids)
                    self._stats.incr("acked", len(ids))
                except REDIS_ERRORS as exc:
                    logger.warning("acking %d entries of %s failed (%s): they will be "
                                   "redelivered", len(ids), key, exc)
                self._held.release(key, *ids)

    async def drain(self) -> None:
        """Wait for the acks queued so far."""
        if self._flushing is not None:
            await asyncio.gather(self._flushing, return_exceptions=True)

    async def already_processed(self, type_name: str, entries: list[Any]) -> list[bool]:
        """For a guarded group: which of ``entries`` carry an id it already finished."""
        if not entries:
            return []
        ids = []
        for _, fields in entries:
            try:
                ids.append(decode_entry(fields)[0].id if fields else "")
            except InvalidEvent:
                ids.append("")
        try:
            scores = await self._client.zmscore(
                self._keys.processed_ids(self._group, type_name), ids)
        except REDIS_ERRORS as exc:  # the WATCHed commit still refuses a second copy
            logger.warning("could not read the processed ids of %s (%s): checked at commit",
                           type_name, exc)
            return [False] * len(entries)
        return [score is not None for score in scores]

    async def ack_at_once(self, key: str, sid: str) -> None:
        """One XACK now (an entry to skip: trimmed, targeted elsewhere, a duplicate)."""
        await self._client.xack(key, self._group, sid)

    async def ack(self, entry: Entry, event_id: str, commands: list[tuple[Any, Any]], *,
                  guard: bool) -> None:
        """Commit ``commands`` (a handler's ``delivery.tx``) with the ack, atomically."""
        effects = [args for args, _ in commands]
        if guard:
            await self._ack_guarded(entry, event_id, effects)
        else:
            await multi_exec(self._client, [*effects, ("XACK", entry.key, self._group,
                                                      entry.sid)])
        self._stats.incr("acked")

    async def _ack_guarded(self, entry: Entry, event_id: str, effects: list[Command]) -> None:
        """Commit effects + processed mark + ack, unless the id was committed meanwhile
        (a second copy of the same id handled concurrently): WATCH makes that check and
        the commit one atomic step."""
        processed = self._keys.processed_ids(self._group, entry.type_name)
        ack = ("XACK", entry.key, self._group, entry.sid)

        def commit(score: Any) -> list[Command] | None:
            if score is not None:
                return None
            return [*effects, ("ZADD", processed, time.time(), event_id), ack]

        if await commit_unless(self._client, processed, ("ZSCORE", processed, event_id),
                               commit) is None:
            await self._client.xack(entry.key, self._group, entry.sid)
            self._stats.incr("duplicates")

    async def dead_letter(self, entry: Entry, error: str, deliveries: int) -> None:
        """Move ``entry`` to its type's dead-letter stream and ack it, in one MULTI."""
        fields = dead_letter_fields(
            (entry.fields or {}).get(ENTRY_EVENT, b""), error=error, group=self._group,
            deliveries=deliveries, source_id=entry.sid, consumer=self._consumer,
        )
        await multi_exec(self._client, [
            ("XADD", self._keys.dead_letter_stream(entry.type_name), "*",
             *(part for pair in fields.items() for part in pair)),
            ("XACK", entry.key, self._group, entry.sid),
        ])
        self._stats.incr("dead_lettered")
