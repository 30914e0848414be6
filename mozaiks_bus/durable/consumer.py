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
  live one after ``consumer_min_idle_s``. A running handler keeps its claim: its entry
  is touched (XCLAIM JUSTID) every third of that time, so a slow but healthy handler is
  not run twice at once. An entry already delivered ``max_deliveries`` times (say, one
  that kills its process) is dead-lettered without calling the handler again.
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

This module reads and runs handlers; :mod:`.settle` acks and dead-letters,
:mod:`.janitor` keeps claims, reclaims and sweeps.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any

from redis import exceptions as rexc

from mozaiks_bus import tracing
from mozaiks_bus._loop import cancel_and_wait
from mozaiks_bus.availability import Availability
from mozaiks_bus.connection import AsyncClient, text
from mozaiks_bus.durable._permits import Permits
from mozaiks_bus.durable.janitor import Janitor
from mozaiks_bus.durable.retries import RetryTimer
from mozaiks_bus.durable.settle import Entry, HeldEntries, Settler
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
from mozaiks_bus.durable.streams import decode_entry, ensure_group
from mozaiks_bus.errors import InvalidEvent, Unprocessable
from mozaiks_bus.event import Event
from mozaiks_bus.interest import declare
from mozaiks_bus.local import handler_name, is_async_callable
from mozaiks_bus.patterns import compile_pattern
from mozaiks_bus.redis_errors import REDIS_ERRORS, is_group_vanished
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
    workers, a retry timer and a :class:`~.janitor.Janitor`."""

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
        self._held: HeldEntries = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._read_size = spec.read_size  # and a reader waits for _read_batch free permits
        self._read_batch = max(1, min(self._read_size, spec.held_at_most // 2))
        self._permits.wake_at = self._read_batch
        self._wants_delivery = spec.wants_delivery
        self._is_async = is_async_callable(spec.handler)
        self._settle = Settler(client, self.keys, group=spec.group, consumer=self.name,
                               stats=stats, held=self._held)
        self._retries = RetryTimer(client, group=spec.group, consumer=self.name,
                                   held=self._held, permits=self._permits,
                                   delivery_count=self._delivery_count, run=self._spawn)
        self._janitor = Janitor(
            client, self.keys, settings, stats, group=spec.group, consumer=self.name,
            guard=spec.guard, held=self._held, permits=self._permits,
            claim_batch=spec.concurrency, types=lambda: self._readers,
            discover=self._discover, reclaimed=self._reclaimed,
            recreate_group=self._recreate_group,
        )

    # -- life cycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start the workers, then create the groups of the streams that exist now and
        start reading, then declare the group's interest in its pattern (every publisher
        stores matching events from then on: :mod:`mozaiks_bus.interest`); while Redis
        does not answer, wait for it (reported to the
        :class:`~mozaiks_bus.availability.Availability`), never fail."""
        self._workers = [asyncio.create_task(self._worker(), name=f"worker:{self.spec.group}")
                         for _ in range(self.spec.concurrency)]
        what = f"consumer group {self.spec.group} ({self.spec.pattern})"
        await self._availability.retry(self._discover, what=what)
        await self._availability.retry(
            lambda: declare(self._client, self.keys, self.spec.pattern, self.spec.group),
            what=what)
        self._tasks = [
            asyncio.create_task(self._janitor.run(), name=f"janitor:{self.spec.group}"),
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
            taken = min(await self._permits.available(self._read_batch), self._read_size)
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

    async def _reclaimed(self, type_name: str, key: str, entries: list[Any]) -> None:
        await self._start_handlers(type_name, key, entries, fresh=False)

    async def _start_handlers(
        self, type_name: str, key: str, entries: list[Any], *, fresh: bool
    ) -> None:
        processed = await self._settle.already_processed(type_name, entries) \
            if self.spec.guard else [False] * len(entries)
        for (entry_id, fields), done in zip(entries, processed, strict=True):
            sid = text(entry_id)
            self._held.setdefault(key, set()).add(sid)
            deliveries = 1 if fresh else await self._delivery_count(key, sid)
            self._spawn(Entry(type_name, key, sid, fields), deliveries, done)

    def _spawn(self, entry: Entry, deliveries: int, already_done: bool = False) -> None:
        self._work.put_nowait((entry, deliveries, already_done))

    async def _worker(self) -> None:
        """One of ``concurrency`` long-lived workers (no task per delivery)."""
        while True:
            entry, deliveries, already_done = await self._work.get()
            self._busy += 1
            try:
                await self._handle(entry, deliveries, already_done=already_done)
            finally:
                self._busy -= 1
                self._work.task_done()

    async def _delivery_count(self, key: str, sid: str) -> int:
        try:
            rows = await self._client.xpending_range(key, self.spec.group, sid, sid, 1)
        except REDIS_ERRORS:  # not known now: counted as a first delivery, not lost
            return 1
        return int(rows[0]["times_delivered"]) if rows else 1

    # -- handling -----------------------------------------------------------------------

    async def _handle(self, entry: Entry, deliveries: int, *, already_done: bool) -> None:
        keep = False
        try:
            keep = await self._handle_inner(entry, deliveries, already_done)
        except REDIS_ERRORS as exc:
            logger.warning("could not settle %s %s (%s): it stays pending",
                           entry.key, entry.sid, exc)
        finally:
            if not keep:
                self._held.get(entry.key, set()).discard(entry.sid)
            self._permits.give()

    async def _handle_inner(self, entry: Entry, deliveries: int, already_done: bool) -> bool:
        """Returns True when the entry stays held (a retry is scheduled, or its ack is
        batched: the batcher releases it)."""
        key, sid, fields = entry.key, entry.sid, entry.fields
        if not fields:
            self.stats.incr("lost_pending")
            logger.error("%s %s was trimmed or deleted before %s acked it: lost",
                         key, sid, self.spec.group)
            await self._settle.ack_at_once(key, sid)
            return False
        try:
            event, target = decode_entry(fields)
        except InvalidEvent as exc:
            await self._settle.dead_letter(entry, f"malformed entry: {exc}", deliveries)
            return False
        if (target is not None and target != self.spec.group) or already_done:
            if already_done:
                self.stats.incr("duplicates")
            await self._settle.ack_at_once(key, sid)
            return False
        if deliveries > self.spec.max_deliveries:
            await self._settle.dead_letter(
                entry, "delivered too often without an ack (crashing handler?)", deliveries
            )
            return False
        delivery = (Delivery(event, entry.base_type, sid, self.spec.group,
                             self.name, deliveries, self._client, stream=entry.type_name)
                    if self._wants_delivery else None)
        try:
            await self._call(event, delivery)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001  # the contract: raise = retry / dead letter
            return await self._failed(entry, deliveries, exc)
        self.stats.incr("consumed")
        tx = None if delivery is None else delivery._tx
        if not self.spec.guard and tx is None:
            self._settle.ack_later(entry.key, entry.sid)
            return True
        await self._settle.ack(entry, event.id, [] if delivery is None else delivery.queued(),
                               guard=self.spec.guard)
        return False

    async def _call(self, event: Event, delivery: Delivery | None) -> None:
        args: tuple[Any, ...] = (event,) if delivery is None else (event, delivery)
        if not tracing.active():  # no span machinery at all on the hot path
            await _invoke(self.spec.handler, self._is_async, args)
            return
        with tracing.span("consumer", f"consume {event.type}", event.type, event.id,
                          event.traceparent):
            await _invoke(self.spec.handler, self._is_async, args)

    async def _failed(self, entry: Entry, deliveries: int, exc: Exception) -> bool:
        self.stats.incr("consume_failed")
        error = f"{type(exc).__name__}: {exc}"
        name = handler_name(self.spec.handler)
        if deliveries >= self.spec.max_deliveries or isinstance(exc, Unprocessable):
            logger.error("%s failed %s %s on delivery %d (%s): dead letter",
                         name, entry.type_name, entry.sid, deliveries, error)
            await self._settle.dead_letter(entry, error, deliveries)
            return False
        delay = self.spec.retry.delay(deliveries)
        logger.warning("%s failed %s %s (delivery %d, %s): retry in %.2fs",
                       name, entry.type_name, entry.sid, deliveries, error, delay)
        self._retries.schedule(entry, delay)
        self.stats.incr("retried")
        return True


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


async def _invoke(handler: ConsumerHandler, is_async: bool, args: tuple[Any, ...]) -> None:
    """Call a durable handler: async ones on the loop, sync ones in a worker thread."""
    if is_async:
        await handler(*args)
        return
    result = await asyncio.to_thread(handler, *args)
    if inspect.isawaitable(result):
        await result
