"""Durable consumers: one consumer group per service, at least once, on Redis Streams.

Contract of ``@bus.consumer(pattern, group=...)``:

* Every group gets every event of the matching streams; consumers of one group share
  the work. A group is created at ``start`` (default id ``0``, so events published
  before its first consumer started are delivered too; ``"$"``: only new ones).
* **Declared interest.** Once ``start`` returned, every publisher on the broker stores
  the events the pattern matches, whatever its routing says (:mod:`mozaiks_bus.interest`).
* **Return = ack. Raise = retry** after a backoff (exponential, full jitter) without
  holding up the events behind it. Redis's own delivery count decides: at
  ``max_deliveries`` the event moves to the type's dead-letter stream (with the error,
  group, count and time) and is acked in the source, in one transaction. A handler that
  raises :class:`~mozaiks_bus.errors.Unprocessable` dead-letters the event at once.
* **Crash recovery.** Entries a dead consumer left pending are claimed (XAUTOCLAIM) by a
  live one after ``consumer_min_idle_s``, all of them in one walk at the rate the live
  one handles entries, before its new reads (:mod:`.reclaim`). A running handler keeps
  its claim: its entry is touched (XCLAIM JUSTID) every third of that time, so a slow
  but healthy handler is not run twice at once. An entry already delivered
  ``max_deliveries`` times (say, one that kills its process) is dead-lettered without
  calling the handler again.
* **Idempotency.** The event id is the idempotency key; handlers must tolerate
  redelivery. ``guard=True`` keeps a per-group processed-id set (``processed_ttl_s``,
  default 24 h): a redelivered id is acked without calling the handler and counted
  (``duplicates``). A handler taking a second parameter gets a :class:`Delivery` whose
  ``tx`` pipeline commits with the ack and the processed mark in one MULTI, so Redis
  effects written through it happen exactly once.
* **Flushed Redis.** If a group or stream disappears (FLUSHALL, a lost Redis without
  persistence), the group is recreated at ``0`` (availability over failing fast),
  counted (``groups_recreated``) and logged as an error: what was in it is gone.
* **Reads and prefetch.** One XREADGROUP asks for up to ``read_count`` entries
  (default 100), whatever the handler concurrency; a consumer holds up to ``prefetch``
  entries (default two reads' worth, 200), handled by ``concurrency`` workers. Entries
  waiting for a worker are held like running ones (heartbeats keep their claim), so the
  next read is on its way while the last one is handled. Lower both for slow handlers
  shared by many consumers: what one consumer holds, the others cannot take.
* **Shutdown** stops reading, waits for running handlers (bounded) and hands the rest
  back: their entries stay pending and are reclaimed after the min-idle time.

This module reads and hands entries to workers; :mod:`.handling` runs the handler and
settles the outcome (:mod:`.settle` acks and dead-letters), :mod:`.janitor` keeps
claims and sweeps, :mod:`.reclaim` takes over what dead consumers left.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis import exceptions as rexc

from mozaiks_bus._loop import cancel_and_wait
from mozaiks_bus.connection import AsyncClient, text
from mozaiks_bus.connection.availability import Availability
from mozaiks_bus.connection.redis_errors import REDIS_ERRORS, is_group_vanished
from mozaiks_bus.durable._permits import Permits
from mozaiks_bus.durable.handling import EntryHandler
from mozaiks_bus.durable.held import HeldEntries
from mozaiks_bus.durable.janitor import Janitor
from mozaiks_bus.durable.reclaim import Reclaimer
from mozaiks_bus.durable.retries import RetryTimer
from mozaiks_bus.durable.settle import Entry, Settler
from mozaiks_bus.durable.spec import (
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_DELIVERIES,
    DEFAULT_READ_COUNT,
    ConsumerHandler,
    ConsumerSpec,
    Delivery,
    default_consumer_name,
    default_prefetch,
)
from mozaiks_bus.durable.streams import ensure_group
from mozaiks_bus.interest import declare
from mozaiks_bus.patterns import compile_pattern
from mozaiks_bus.retry import Backoff
from mozaiks_bus.settings import BusSettings
from mozaiks_bus.stats import BusStats

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_MAX_DELIVERIES",
    "DEFAULT_READ_COUNT",
    "ConsumerHandler",
    "ConsumerSpec",
    "Delivery",
    "GroupConsumer",
    "default_consumer_name",
    "default_prefetch",
]

logger = logging.getLogger("mozaiks_bus.durable.consumer")
_READ_ERROR_BACKOFF = Backoff(min_s=2.0, max_s=2.0)  # a refused read: not a lost link


class GroupConsumer:
    """Runs one :class:`ConsumerSpec`: a reader per matching stream, ``concurrency``
    workers that hand entries to an :class:`~.handling.EntryHandler`, a retry timer, a
    :class:`~.janitor.Janitor` and a :class:`~.reclaim.Reclaimer`."""

    def __init__(
        self, spec: ConsumerSpec, *, settings: BusSettings, stats: BusStats,
        client: AsyncClient, blocking_client: AsyncClient, availability: Availability,
    ) -> None:
        self.spec = spec
        self._availability = availability
        self.settings = settings
        self.stats = stats
        self.keys = settings.keys
        self.name = settings.consumer_name or default_consumer_name(settings.service)
        self._client = client
        self._blocking = blocking_client
        self._pattern = compile_pattern(spec.pattern)
        # what this consumer holds, handled or waiting; reads fetch about half of it
        self._permits = Permits(spec.held_at_most)
        self._readers: dict[str, asyncio.Task[None]] = {}
        self._work: asyncio.Queue[tuple[Entry, int, bool]] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._busy = 0
        self._held = HeldEntries()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._read_size = spec.read_size  # and a reader waits for _read_batch free permits
        self._read_batch = max(1, min(self._read_size, spec.held_at_most // 2))
        self._permits.wake_at = self._read_batch
        self._settle = Settler(client, self.keys, group=spec.group, consumer=self.name,
                               stats=stats, held=self._held)
        self._retries = RetryTimer(client, group=spec.group, consumer=self.name,
                                   held=self._held, permits=self._permits,
                                   delivery_count=self._delivery_count, run=self._spawn)
        self._handler = EntryHandler(spec, consumer=self.name, client=client, stats=stats,
                                     settle=self._settle, retries=self._retries,
                                     held=self._held, permits=self._permits)
        self._janitor = Janitor(
            client, self.keys, settings, stats, group=spec.group, consumer=self.name,
            guard=spec.guard, held=self._held, types=lambda: self._readers,
            discover=self._discover,
        )
        self._reclaimer = Reclaimer(
            client, self.keys, settings, stats, group=spec.group, consumer=self.name,
            held=self._held, permits=self._permits, batch=self._read_batch,
            types=lambda: self._readers, reclaimed=self._reclaimed,
            recreate_group=self._recreate_group,
        )

    # -- life cycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start the workers, then create the groups of the streams that exist now and
        start reading, then declare the group's interest in its pattern (every publisher
        stores matching events from then on: :mod:`mozaiks_bus.interest`); while Redis
        does not answer, wait for it (reported to the
        :class:`~mozaiks_bus.connection.availability.Availability`), never fail."""
        self._workers = [asyncio.create_task(self._worker(), name=f"worker:{self.spec.group}")
                         for _ in range(self.spec.concurrency)]
        what = f"consumer group {self.spec.group} ({self.spec.pattern})"
        await self._availability.retry(self._discover, what=what)
        await self._availability.retry(
            lambda: declare(self._client, self.keys, self.spec.pattern, self.spec.group),
            what=what)
        self._tasks = [
            asyncio.create_task(self._janitor.run(), name=f"janitor:{self.spec.group}"),
            asyncio.create_task(self._reclaimer.run(), name=f"reclaim:{self.spec.group}"),
            asyncio.create_task(self._retries.run(), name=f"retries:{self.spec.group}"),
        ]

    async def stop(self, timeout: float) -> None:
        """Stop reading, wait for running handlers (bounded), hand the rest back."""
        self._stopping = True
        stuck = await cancel_and_wait([*self._readers.values(), *self._tasks])
        if stuck:
            logger.error("%d task(s) of consumer group %s did not stop: %s", len(stuck),
                         self.spec.group, [task.get_name() for task in stuck])
        try:
            await asyncio.wait_for(self._work.join(), timeout)
        except TimeoutError:
            logger.warning("%d deliveries of %s did not finish in %.1fs: handed back "
                           "(reclaimed after the min-idle time)",
                           self._work.qsize() + self._busy, self.spec.group, timeout)
        await cancel_and_wait(self._workers)
        await self._settle.drain()

    # -- streams ------------------------------------------------------------------------

    async def _discover(self) -> None:
        indexed: set[Any] = set() if self._pattern.is_exact else \
            await self._client.smembers(self.keys.stream_index())
        types = self.settings.partitions.matching(self._pattern, (text(m) for m in indexed))
        for type_name in types:
            if type_name not in self._readers:
                key = self.keys.stream(type_name)
                await ensure_group(self._client, key, self.spec.group, start=self.spec.start)
                await self._client.sadd(self.keys.stream_index(), type_name)
                self._readers[type_name] = asyncio.create_task(
                    self._read_loop(type_name, key), name=f"reader:{self.spec.group}:{type_name}"
                )

    async def _recreate_group(self, key: str) -> None:
        created = await ensure_group(self._client, key, self.spec.group, start="0")
        if created:
            self.stats.incr("groups_recreated")
            logger.error("consumer group %s on %s had vanished (Redis flushed?): recreated "
                         "at 0; what the stream held before is gone", self.spec.group, key)

    # -- reading ------------------------------------------------------------------------

    async def _read_loop(self, type_name: str, key: str) -> None:
        # First our own pending entries (a restart under the same consumer name), read
        # after the last id seen so entries being handled are not read again; then new.
        position, recovering = "0", True
        backoff = Backoff()
        while not self._stopping:
            # Permits are not held across the blocking read, so retries and reclaims are
            # not starved; a read can overshoot the concurrency by what it asked for.
            # Read in batches: wait for half the permits rather than reading one entry
            # per freed permit (the retry/claim paths still get single permits).
            taken = min(await self._permits.available(self._read_batch, reader=True),
                        self._read_size)
            try:
                reply: Any = await self._blocking.xreadgroup(
                    self.spec.group, self.name, {key: ">" if not recovering else position},
                    count=taken, block=None if recovering else self.settings.consumer_block_ms,
                )
            except REDIS_ERRORS as exc:
                await _read_failed(self, key, exc, backoff)
                continue
            if backoff.reset():
                self._availability.found(f"reading {key}")
            entries = reply[0][1] if reply else []
            self._permits.force_take(len(entries))
            await self._start_handlers(type_name, key, entries, fresh=not recovering)
            if recovering:
                if len(entries) < taken:
                    recovering = False
                else:
                    position = text(entries[-1][0])

    async def _reclaimed(self, type_name: str, key: str, entries: list[Any],
                         counts: list[int]) -> None:
        await self._start_handlers(type_name, key, entries, fresh=False, counts=counts)

    async def _start_handlers(
        self, type_name: str, key: str, entries: list[Any], *, fresh: bool,
        counts: list[int] | None = None,
    ) -> None:
        processed = await self._settle.already_processed(type_name, entries) \
            if self.spec.guard else [False] * len(entries)
        sids = [text(entry_id) for entry_id, _ in entries]
        if counts is None:
            counts = [1] * len(sids) if fresh else await self._delivery_counts(key, sids)
        for (_, fields), sid, done, deliveries in zip(entries, sids, processed, counts,
                                                      strict=True):
            self._held.add(key, sid)
            self._spawn(Entry(type_name, key, sid, fields), deliveries, done)

    def _spawn(self, entry: Entry, deliveries: int, already_done: bool = False) -> None:
        self._work.put_nowait((entry, deliveries, already_done))

    async def _worker(self) -> None:
        """One of ``concurrency`` long-lived workers (no task per delivery)."""
        while True:
            entry, deliveries, already_done = await self._work.get()
            self._busy += 1
            try:
                await self._handler.handle(entry, deliveries, already_done=already_done)
            finally:
                self._busy -= 1
                self._work.task_done()

    async def _delivery_count(self, key: str, sid: str) -> int:
        return (await self._delivery_counts(key, [sid]))[0]

    async def _delivery_counts(self, key: str, sids: list[str]) -> list[int]:
        """Redis's delivery count of each of ``sids`` (this consumer's, in id order as
        XREADGROUP and XAUTOCLAIM return them), in one XPENDING."""
        if not sids:
            return []
        try:
            rows = await self._client.xpending_range(
                key, self.spec.group, sids[0], sids[-1],
                len(sids) + self._held.count(key), consumername=self.name)
        except REDIS_ERRORS:  # not known now: counted as a first delivery, not lost
            return [1] * len(sids)
        found = {text(row["message_id"]): int(row["times_delivered"]) for row in rows}
        return [found.get(sid, 1) for sid in sids]

async def _read_failed(consumer: GroupConsumer, key: str, exc: BaseException,
                       backoff: Backoff) -> None:
    """After a failed read: recreate a vanished group, wait out a lost link; a read
    loop never ends on a Redis error (its own recovery failing included)."""
    try:
        if is_group_vanished(exc):
            await consumer._recreate_group(key)  # the consumer's own helper
            return
    except REDIS_ERRORS as again:  # the group could not be made now: try again later
        exc = again
    if isinstance(exc, rexc.ResponseError) and not is_group_vanished(exc):
        logger.error("reading %s failed: %s", key, exc)
        await _READ_ERROR_BACKOFF.sleep()
    else:
        await consumer._availability.pause(f"reading {key}", exc, backoff)
