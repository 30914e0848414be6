"""Durable consumers: one consumer group per service, at least once, on Redis Streams.

Contract of ``@bus.consumer(pattern, group=...)``:

* Every group gets every event of the matching streams; consumers of one group share
  the work. A group is created at id ``0``, so events published before its first
  consumer started are delivered too.
* **Return = ack. Raise = retry** after a backoff (exponential, full jitter) without
  holding up the events behind it. Redis's own delivery count decides: at
  ``max_deliveries`` the event moves to the type's dead-letter stream (with the error,
  group, count and time) and is acked in the source, in one transaction.
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
* **Shutdown** stops reading, waits for running handlers (bounded) and hands the rest
  back: their entries stay pending and are reclaimed after the min-idle time.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import inspect
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from redis import exceptions as rexc
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from mozaiks_bus.durable.streams import FIELD_EVENT, decode_entry, ensure_group
from mozaiks_bus.errors import InvalidEvent
from mozaiks_bus.event import Event
from mozaiks_bus.keys import Keys
from mozaiks_bus.local import handler_name, is_async_callable
from mozaiks_bus.patterns import compile_pattern
from mozaiks_bus.retry import RetryPolicy
from mozaiks_bus.settings import BusSettings
from mozaiks_bus.stats import BusStats

__all__ = ["ConsumerSpec", "Delivery", "GroupConsumer", "default_consumer_name"]

logger = logging.getLogger("mozaiks_bus.durable.consumer")
ConsumerHandler = Callable[..., Any]
BACKOFF_MAX_S = 2.0
SWEEP_INTERVAL_S = 60.0
READ_MAX = 128  # entries one XREADGROUP asks for at most
DEAD_CONSUMER_IDLE_S = 3600.0


def default_consumer_name(service: str) -> str:
    """``<service>-<hostname>-<pid>``: unique on a host, stable for the process's life."""
    return f"{service}-{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    """What ``@bus.consumer`` registered."""

    pattern: str
    group: str
    handler: ConsumerHandler
    concurrency: int = 4
    max_deliveries: int = 5
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    guard: bool = False
    start: str = "0"

    def __post_init__(self) -> None:
        compile_pattern(self.pattern)
        Keys.group(self.group)
        if self.concurrency < 1:
            raise InvalidEvent("concurrency", "must be at least 1", value=self.concurrency)
        if self.max_deliveries < 1:
            raise InvalidEvent("max_deliveries", "must be at least 1", value=self.max_deliveries)

    @property
    def wants_delivery(self) -> bool:
        """Whether the handler takes a second required (Delivery) parameter."""
        try:
            params = list(inspect.signature(self.handler).parameters.values())
        except (TypeError, ValueError):
            return False
        required = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                    and p.default is p.empty]
        return len(required) >= 2


@dataclass(slots=True)
class Delivery:
    """One delivery of one event to one group (the handler's optional second argument)."""

    event: Event
    type: str
    stream_id: str
    group: str
    consumer: str
    deliveries: int
    _client: Redis
    _tx: Pipeline | None = None

    @property
    def tx(self) -> Pipeline:
        """A MULTI pipeline executed atomically with the ack (keys must share the type's
        hash tag ``{<type>}`` on Redis Cluster)."""
        if self._tx is None:
            self._tx = self._client.pipeline(transaction=True)
        return self._tx


@dataclass(frozen=True, slots=True)
class _Entry:
    """One stream entry as read: where it is and what it holds."""

    type_name: str
    key: str
    sid: str
    fields: dict[bytes, bytes] | None


class _Slots:
    """A counting semaphore that can hand out several permits at once (one loop)."""

    def __init__(self, size: int) -> None:
        self.free = size
        self.wake_at = 1
        self._freed = asyncio.Event()

    async def _wait(self, at_least: int = 1) -> None:
        while self.free < at_least:
            self._freed.clear()
            await self._freed.wait()

    async def take(self, most: int) -> int:
        """Wait for a permit, then take up to ``most``."""
        await self._wait()
        taken = min(self.free, most)
        self.free -= taken
        return taken

    async def available(self, at_least: int = 1) -> int:
        """Wait until ``at_least`` permits are free; returns how many (takes none)."""
        await self._wait(at_least)
        return self.free

    def force_take(self, count: int) -> None:
        """Take ``count`` permits even if fewer are free (a reader that already read)."""
        self.free -= count

    def try_take(self, most: int) -> int:
        """Take up to ``most`` permits without waiting; returns how many were taken."""
        taken = max(0, min(self.free, most))
        self.free -= taken
        return taken

    def give(self, count: int = 1) -> None:
        """Return permits."""
        self.free += count
        if self.free >= self.wake_at:
            self._freed.set()


class _AckBatcher:
    """Plain acks of one loop turn go out as one XACK per stream (not one per entry).

    An entry stays held (heartbeats keep its claim) until its XACK is sent; if the
    XACK fails the entry stays pending and is redelivered: at least once."""

    def __init__(self, consumer: GroupConsumer) -> None:
        self._consumer = consumer
        self._pending: dict[str, list[str]] = {}
        self._flushing: asyncio.Task[None] | None = None

    def add(self, key: str, sid: str) -> None:
        self._pending.setdefault(key, []).append(sid)
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let the acks of this loop turn gather
        consumer = self._consumer
        while self._pending:
            batch, self._pending = self._pending, {}
            for key, ids in batch.items():
                try:
                    await consumer._client.xack(key, consumer.spec.group, *ids)
                    consumer.stats.incr("acked", len(ids))
                except (rexc.RedisError, OSError) as exc:
                    logger.warning("acking %d entries of %s failed (%s): they will be "
                                   "redelivered", len(ids), key, exc)
                held = consumer._held.get(key, set())
                held.difference_update(ids)

    async def drain(self) -> None:
        """Wait for the acks queued so far."""
        if self._flushing is not None:
            await asyncio.gather(self._flushing, return_exceptions=True)


class GroupConsumer:
    """Runs one :class:`ConsumerSpec`: a reader per matching stream, plus a janitor."""

    def __init__(
        self, spec: ConsumerSpec, *, url: str, settings: BusSettings, stats: BusStats,
        client: Redis, blocking_client: Redis,
    ) -> None:
        self.spec = spec
        self.url = url
        self.settings = settings
        self.stats = stats
        self.keys = Keys(settings.prefix)
        self.name = settings.consumer_name or default_consumer_name(settings.service)
        self._client = client
        self._blocking = blocking_client
        self._pattern = compile_pattern(spec.pattern)
        self._slots = _Slots(spec.concurrency)
        self._readers: dict[str, asyncio.Task[None]] = {}
        # the reader's permits bound this queue to about ``concurrency`` entries
        self._work: asyncio.Queue[tuple[_Entry, int, bool]] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._busy = 0
        self._held: dict[str, set[str]] = {}  # stream key -> ids we are handling or retrying
        self._retries: list[tuple[float, str, str, str]] = []  # (due, type, key, id)
        self._retry_wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._read_batch = max(1, spec.concurrency // 2)
        self._slots.wake_at = self._read_batch
        self._wants_delivery = spec.wants_delivery
        self._acks = _AckBatcher(self)
        self._is_async = is_async_callable(spec.handler)

    # -- life cycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Create the groups of the streams that exist now and start reading."""
        self._workers = [asyncio.create_task(self._worker(), name=f"worker:{self.spec.group}")
                         for _ in range(self.spec.concurrency)]
        await self._discover()
        self._tasks = [
            asyncio.create_task(self._janitor_loop(), name=f"janitor:{self.spec.group}"),
            asyncio.create_task(self._retry_loop(), name=f"retries:{self.spec.group}"),
        ]

    async def stop(self, timeout: float) -> None:
        """Stop reading, wait for running handlers (bounded), hand the rest back."""
        self._stopping = True
        for task in [*self._readers.values(), *self._tasks]:
            task.cancel()
        await asyncio.gather(*self._readers.values(), *self._tasks, return_exceptions=True)
        try:
            await asyncio.wait_for(self._work.join(), timeout)
        except TimeoutError:
            logger.warning("%d deliveries of %s did not finish in %.1fs: handed back "
                           "(reclaimed after the min-idle time)",
                           self._work.qsize() + self._busy, self.spec.group, timeout)
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        await self._acks.drain()

    # -- streams ------------------------------------------------------------------------

    async def _discover(self) -> None:
        if self._pattern.is_exact:
            types = [self.spec.pattern]
        else:
            members = await self._client.smembers(self.keys.stream_index())
            names = sorted(m.decode() if isinstance(m, bytes) else m for m in members)
            types = [name for name in names if self._pattern.matches(name)]
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
        backoff = 0.05
        while not self._stopping:
            # Permits are not held across the blocking read, so retries and reclaims are
            # not starved; a read can overshoot the concurrency by what it asked for.
            # Read in batches: wait for half the permits rather than reading one entry
            # per freed permit (the retry/claim paths still get single permits).
            taken = min(await self._slots.available(self._read_batch), READ_MAX)
            try:
                reply: Any = await self._blocking.xreadgroup(
                    self.spec.group, self.name, {key: ">" if not recovering else position},
                    count=taken, block=None if recovering else self.settings.consumer_block_ms,
                )
            except rexc.ResponseError as exc:
                if _group_vanished(exc):
                    await self._recreate_group(key)
                    continue
                logger.error("reading %s failed: %s", key, exc)
                await asyncio.sleep(BACKOFF_MAX_S)
                continue
            except (rexc.RedisError, OSError) as exc:
                logger.warning("reading %s failed (%s); retrying in %.2fs", key, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            backoff = 0.05
            entries = reply[0][1] if reply else []
            self._slots.force_take(len(entries))
            await self._start_handlers(type_name, key, entries, fresh=not recovering)
            if recovering:
                if len(entries) < taken:
                    recovering = False
                else:
                    last = entries[-1][0]
                    position = last.decode() if isinstance(last, bytes) else last

    async def _start_handlers(
        self, type_name: str, key: str, entries: list[Any], *, fresh: bool
    ) -> None:
        processed = await self._already_processed(type_name, entries)
        for (entry_id, fields), done in zip(entries, processed, strict=True):
            sid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            self._held.setdefault(key, set()).add(sid)
            deliveries = 1 if fresh else await self._delivery_count(key, sid)
            self._spawn(_Entry(type_name, key, sid, fields), deliveries, already_done=done)

    def _spawn(self, entry: _Entry, deliveries: int, *, already_done: bool = False) -> None:
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

    async def _already_processed(self, type_name: str, entries: list[Any]) -> list[bool]:
        if not self.spec.guard or not entries:
            return [False] * len(entries)
        ids = []
        for _, fields in entries:
            try:
                ids.append(decode_entry(fields)[0].id if fields else "")
            except InvalidEvent:
                ids.append("")
        scores = await self._client.zmscore(self.keys.processed_ids(self.spec.group, type_name),
                                            ids)
        return [score is not None for score in scores]

    async def _delivery_count(self, key: str, sid: str) -> int:
        rows = await self._client.xpending_range(key, self.spec.group, sid, sid, 1)
        return int(rows[0]["times_delivered"]) if rows else 1

    # -- handling -----------------------------------------------------------------------

    async def _handle(self, entry: _Entry, deliveries: int, *, already_done: bool) -> None:
        keep = False
        try:
            keep = await self._handle_inner(entry, deliveries, already_done)
        except (rexc.RedisError, OSError) as exc:
            logger.warning("could not settle %s %s (%s): it stays pending",
                           entry.key, entry.sid, exc)
        finally:
            if not keep:
                self._held.get(entry.key, set()).discard(entry.sid)
            self._slots.give()

    async def _handle_inner(self, entry: _Entry, deliveries: int, already_done: bool) -> bool:
        """Returns True when the entry stays held (a retry is scheduled, or its ack is
        batched: the batcher releases it)."""
        key, sid, fields = entry.key, entry.sid, entry.fields
        if not fields:
            self.stats.incr("lost_pending")
            logger.error("%s %s was trimmed or deleted before %s acked it: lost",
                         key, sid, self.spec.group)
            await self._client.xack(key, self.spec.group, sid)
            return False
        try:
            event, target = decode_entry(fields)
        except InvalidEvent as exc:
            await self._dead_letter(entry, f"malformed entry: {exc}", deliveries)
            return False
        if (target is not None and target != self.spec.group) or already_done:
            if already_done:
                self.stats.incr("duplicates")
            await self._client.xack(key, self.spec.group, sid)
            return False
        if deliveries > self.spec.max_deliveries:
            await self._dead_letter(
                entry, "delivered too often without an ack (crashing handler?)", deliveries
            )
            return False
        delivery = (Delivery(event, entry.type_name, sid, self.spec.group, self.name,
                             deliveries, self._client) if self._wants_delivery else None)
        try:
            await self._call(event, delivery)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001  # the contract: raise = retry / dead letter
            return await self._failed(entry, deliveries, exc)
        self.stats.incr("consumed")
        tx = None if delivery is None else delivery._tx
        if not self.spec.guard and tx is None:
            self._acks.add(entry.key, entry.sid)
            return True
        await self._ack(entry, event, tx)
        return False

    async def _call(self, event: Event, delivery: Delivery | None) -> None:
        args: tuple[Any, ...] = (event,) if delivery is None else (event, delivery)
        if self._is_async:
            await self.spec.handler(*args)
            return
        result = await asyncio.to_thread(self.spec.handler, *args)
        if inspect.isawaitable(result):
            await result

    async def _failed(self, entry: _Entry, deliveries: int, exc: Exception) -> bool:
        self.stats.incr("consume_failed")
        error = f"{type(exc).__name__}: {exc}"
        name = handler_name(self.spec.handler)
        if deliveries >= self.spec.max_deliveries:
            logger.error("%s failed %s %s on delivery %d (%s): dead letter",
                         name, entry.type_name, entry.sid, deliveries, error)
            await self._dead_letter(entry, error, deliveries)
            return False
        delay = self.spec.retry.delay(deliveries)
        logger.warning("%s failed %s %s (delivery %d, %s): retry in %.2fs",
                       name, entry.type_name, entry.sid, deliveries, error, delay)
        heapq.heappush(self._retries, (time.monotonic() + delay, entry.type_name, entry.key,
                                       entry.sid))
        self._retry_wake.set()
        self.stats.incr("retried")
        return True

    async def _ack(self, entry: _Entry, event: Event, tx: Pipeline | None) -> None:
        commands = [] if tx is None else list(tx.command_stack)
        if not self.spec.guard:
            pipe = self._client.pipeline(transaction=True)
            for args, options in commands:
                pipe.execute_command(*args, **options)
            pipe.xack(entry.key, self.spec.group, entry.sid)
            await pipe.execute()
            self.stats.incr("acked")
            return
        await self._ack_guarded(entry, event, commands)
        self.stats.incr("acked")

    async def _ack_guarded(
        self, entry: _Entry, event: Event, commands: list[tuple[Any, Any]]
    ) -> None:
        """Commit effects + processed mark + ack, unless the id was committed meanwhile
        (a second copy of the same id handled concurrently): WATCH makes that check and
        the commit one atomic step."""
        processed = self.keys.processed_ids(self.spec.group, entry.type_name)
        async with self._client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(processed)
                    if await pipe.zscore(processed, event.id) is not None:
                        await pipe.unwatch()  # type: ignore[no-untyped-call]
                        await self._client.xack(entry.key, self.spec.group, entry.sid)
                        self.stats.incr("duplicates")
                        return
                    pipe.multi()  # type: ignore[no-untyped-call]
                    for args, options in commands:
                        pipe.execute_command(*args, **options)
                    pipe.zadd(processed, {event.id: time.time()})
                    pipe.xack(entry.key, self.spec.group, entry.sid)
                    await pipe.execute()
                    return
                except rexc.WatchError:
                    continue

    async def _dead_letter(self, entry: _Entry, error: str, deliveries: int) -> None:
        fields = entry.fields or {}
        pipe = self._client.pipeline(transaction=True)
        pipe.xadd(self.keys.dead_letter_stream(entry.type_name), {
            "e": fields.get(FIELD_EVENT, b""), "error": error[:2000],
            "group": self.spec.group, "deliveries": deliveries,
            "dead_at": int(time.time() * 1000), "source_id": entry.sid, "consumer": self.name,
        })
        pipe.xack(entry.key, self.spec.group, entry.sid)
        await pipe.execute()
        self.stats.incr("dead_lettered")

    # -- retries, claims and heartbeats -----------------------------------------------------

    async def _retry_loop(self) -> None:
        while True:
            if not self._retries:
                self._retry_wake.clear()
                await self._retry_wake.wait()
                continue
            due, type_name, key, sid = self._retries[0]
            wait = due - time.monotonic()
            if wait > 0:
                self._retry_wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._retry_wake.wait(), wait)
                continue
            heapq.heappop(self._retries)
            await self._slots.take(1)
            try:
                claimed: Any = await self._client.xclaim(key, self.spec.group, self.name, 0,
                                                         [sid])
            except (rexc.RedisError, OSError) as exc:
                self._slots.give()
                logger.warning("retry of %s %s postponed: %s", key, sid, exc)
                heapq.heappush(self._retries, (time.monotonic() + 1.0, type_name, key, sid))
                continue
            if not claimed or claimed[0][1] is None:
                self._slots.give()
                self._held.get(key, set()).discard(sid)
                continue
            deliveries = await self._delivery_count(key, sid)
            self._spawn(_Entry(type_name, key, sid, claimed[0][1]), deliveries)

    async def _janitor_loop(self) -> None:
        interval = self.settings.consumer_claim_interval_s
        touch_every = self.settings.consumer_min_idle_s / 3
        last_touch = last_claim = 0.0
        last_sweep = time.monotonic()
        while True:
            await asyncio.sleep(min(interval, touch_every, 1.0))
            now = time.monotonic()
            try:
                if now - last_touch >= touch_every:
                    last_touch = now
                    await self._touch_held()
                if now - last_claim >= interval:
                    last_claim = now
                    await self._discover()
                    for type_name in list(self._readers):
                        await self._claim_abandoned(type_name)
                if now - last_sweep >= min(SWEEP_INTERVAL_S, self.settings.retention_interval_s):
                    last_sweep = now
                    for type_name in list(self._readers):
                        await self._sweep(type_name)
            except (rexc.RedisError, OSError) as exc:
                logger.warning("janitor of %s: %s", self.spec.group, exc)

    async def _sweep(self, type_name: str) -> None:
        """Forget processed ids older than ``processed_ttl_s``; remove consumers that have
        been idle for long with nothing pending (dead processes of earlier deploys)."""
        ttl = self.settings.processed_ttl_s
        if self.spec.guard:
            processed = self.keys.processed_ids(self.spec.group, type_name)
            await self._client.zremrangebyscore(processed, "-inf", time.time() - ttl)
            await self._client.expire(processed, int(ttl * 2))
        key = self.keys.stream(type_name)
        idle_limit_ms = int(max(DEAD_CONSUMER_IDLE_S, 10 * self.settings.consumer_min_idle_s)
                            * 1000)
        consumers: Any = await self._client.xinfo_consumers(key, self.spec.group)
        for consumer in consumers:
            name = consumer["name"].decode() if isinstance(consumer["name"], bytes) \
                else consumer["name"]
            if name != self.name and int(consumer["pending"]) == 0 \
                    and int(consumer["idle"]) > idle_limit_ms:
                await self._client.xgroup_delconsumer(key, self.spec.group, name)

    async def _touch_held(self) -> None:
        for key, ids in list(self._held.items()):
            if ids:
                await self._client.xclaim(key, self.spec.group, self.name, 0,
                                          cast(Any, sorted(ids)), justid=True)

    async def _claim_abandoned(self, type_name: str) -> None:
        key = self.keys.stream(type_name)
        taken = self._slots.try_take(self.spec.concurrency)
        if taken == 0:
            return
        min_idle_ms = int(self.settings.consumer_min_idle_s * 1000)
        try:
            reply: Any = await self._client.xautoclaim(key, self.spec.group, self.name,
                                                  min_idle_ms, "0-0", count=taken)
        except rexc.ResponseError as exc:
            self._slots.give(taken)
            if _group_vanished(exc):
                await self._recreate_group(key)
                return
            raise
        except BaseException:
            self._slots.give(taken)
            raise
        claimed, deleted = reply[1], (reply[2] if len(reply) > 2 else [])
        if deleted:
            self.stats.incr("lost_pending", len(deleted))
            logger.error("%d entries pending in %s for %s were trimmed or deleted: lost",
                         len(deleted), key, self.spec.group)
        mine = [(eid, fields) for eid, fields in claimed
                if (eid.decode() if isinstance(eid, bytes) else eid) not in
                self._held.get(key, set())]
        if mine:
            self.stats.incr("reclaimed", len(mine))
            await self._start_handlers(type_name, key, mine, fresh=False)
        self._slots.give(taken - len(mine))


def _group_vanished(exc: Exception) -> bool:
    """NOGROUP, or Redis 7's reply to a blocked read whose stream was deleted."""
    text = str(exc)
    return "NOGROUP" in text or text.startswith("UNBLOCKED")
