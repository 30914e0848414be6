"""The batching sender of the Redis transport: every write the bus makes goes through it.

* ``publish_nowait`` (behind ``Bus.emit``) appends to a bounded buffer and returns; when
  the buffer is full the ``emit_drop_policy`` drops the oldest (or the newest) event.
* ``confirm`` (behind ``await publish``, ``publish_atomic`` and ``bus.ui.send``) waits
  for its own reply; concurrent ones share a pipeline. Every waiting confirmed item gets
  into the next pipeline (up to :data:`MAX_BATCH`), after the emitted items that fill
  the rest of it, so a publish may overtake only emits still buffered behind those.
* One task drains both into pipelines of at most :data:`MAX_BATCH` items: ``PUBLISH``
  for fan-out, ``XADD`` (``MAXLEN ~ stream_hard_max_len``) plus the stream index for
  durable, the ui script for ui, ``MULTI``/``EXEC`` around an atomic group.
* Each batch is written and settled by a :class:`~.batch.BatchWriter`: in a batch Redis
  did not take, fan-out-only emitted events are dropped and counted, emitted durable
  ones go back to the front of the buffer (:meth:`Sender.requeue`). Then the sender
  backs off (bounded) and goes on with what is buffered, so new events flow again once
  Redis returns.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis

from mozaiks_bus._loop import call_on_loop
from mozaiks_bus.connection.availability import Availability
from mozaiks_bus.keys import Keys
from mozaiks_bus.retry import Backoff
from mozaiks_bus.settings import BusSettings
from mozaiks_bus.stats import BusStats
from mozaiks_bus.transports.redis.batch import BatchWriter
from mozaiks_bus.transports.redis.commands import CommandBuilder, HeldConnection
from mozaiks_bus.transports.redis.deadlines import SharedDeadline
from mozaiks_bus.transports.redis.items import EventItem, FrameItem, Outgoing

__all__ = ["MAX_BATCH", "Executor", "Sender"]

Executor = Callable[[list[tuple[Any, ...]]], Awaitable[list[Any]]]
"""Runs a batch's commands (``MULTI``...``EXEC`` blocks included) and returns one reply
per command, raising the first error: what a transport other than one Redis (a
cluster) plugs into the sender."""

logger = logging.getLogger("mozaiks_bus.redis")
MAX_BATCH = 512
_WHAT = "the sender"


class Sender:
    """Turns buffered and confirmed items into pipelines on one held connection."""

    def __init__(self, url: str, *, settings: BusSettings, stats: BusStats, keys: Keys,
                 origin: str, availability: Availability) -> None:
        self.url = url
        self._availability = availability
        self.settings = settings
        self.stats = stats
        self.keys = keys
        self.commands = CommandBuilder(keys, settings, origin)
        self._buffer: deque[Outgoing] = deque()
        self._confirmed: deque[Outgoing] = deque()
        self._lock = threading.Lock()
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._held: HeldConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._idle = True
        self._flush_waiters: list[asyncio.Future[None]] = []
        self._deadline = SharedDeadline(settings.publish_timeout_s)
        self._executor: Executor | None = None
        self._writer = BatchWriter(self.commands, self._execute, stats=stats, url=url,
                                   requeue=self.requeue,
                                   publish_timeout_s=settings.publish_timeout_s)

    @property
    def buffered(self) -> int:
        """Emitted items not yet handed to Redis."""
        return len(self._buffer)

    # -- life cycle ---------------------------------------------------------------------

    def start(self, client: Redis | None, executor: Executor | None = None) -> None:
        """Start the sending task on the running loop, writing through ``client`` (one
        held connection), or through ``executor`` when given."""
        if executor is None:
            assert client is not None
            self._held = HeldConnection(client)
            executor = self._held.execute
        self._executor = executor
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="mozaiks-bus-sender")
        if self._buffer or self._confirmed:
            self._wake.set()

    async def stop(self) -> None:
        """Flush (bounded by the publish timeout), drop and count the rest, stop."""
        await self.flush(self.settings.publish_timeout_s)
        left = len(self._buffer)
        if left:
            self.stats.incr("dropped_remote", left)
            logger.warning("stopping with %d unsent fan-out events: dropped", left)
            self._buffer.clear()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._deadline.cancel()
        with self._lock:
            pending, self._confirmed = list(self._confirmed), deque()
        for item in pending:
            if item.future is not None and not item.future.done():
                item.future.set_exception(RuntimeError("the transport stopped"))
        if self._held is not None:
            await self._held.release()

    # -- queueing -----------------------------------------------------------------------

    def publish_nowait(self, item: Outgoing) -> None:
        """Buffer ``item``; never blocks or raises (a full buffer drops, counted)."""
        with self._lock:
            if len(self._buffer) >= self.settings.emit_buffer_size:
                self.stats.incr("dropped_remote")
                if self.settings.emit_drop_policy == "drop_newest":
                    return
                self._buffer.popleft()
            self._buffer.append(item)
            wake = self._idle
            self._idle = False
        if wake:
            call_on_loop(self._loop, self._wake_up)

    async def confirm(self, item: Outgoing, *, bounded: bool = False) -> Any:
        """Send ``item`` in the next pipeline; returns its first reply, or raises.

        ``bounded``: raise TimeoutError if Redis has not taken it within
        ``publish_timeout_s`` (it is then never sent late)."""
        item.future = future = asyncio.get_running_loop().create_future()
        with self._lock:
            self._confirmed.append(item)
            self._idle = False
        if bounded:
            self._deadline.watch(future)
        self._wake_up()
        return await future

    async def send_frame(self, chat_id: str, frame: str) -> Any:
        """Append a bare UI frame to ``chat_id``'s history and publish it (confirmed)."""
        return await self.confirm(FrameItem(chat_id, frame))

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything buffered so far was handed to Redis (or dropped);
        False if ``timeout`` ran out first."""
        if self._loop is None or (self._idle and not self._buffer):
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._flush_waiters.append(waiter)
        self._wake_up()
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except TimeoutError:
            return False
        return True

    def _wake_up(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _take_batch(self) -> list[Outgoing]:
        with self._lock:
            confirmed: list[Outgoing] = []
            while self._confirmed and len(confirmed) < MAX_BATCH:
                item = self._confirmed.popleft()
                if item.future is not None and item.future.done():
                    continue  # the caller gave up (timed out): do not store it late
                confirmed.append(item)
            # Confirmed items always get into this batch (an awaited publish never
            # waits behind a full emit buffer), but emitted ones taken with them go
            # first: one task's emit-then-publish arrives in that order.
            batch: list[Outgoing] = []
            while self._buffer and len(batch) + len(confirmed) < MAX_BATCH:
                batch.append(self._buffer.popleft())
            batch += confirmed
            if not batch:
                self._idle = True
        if not batch:
            waiters, self._flush_waiters = self._flush_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
        return batch

    # -- sending ------------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._wake is not None
        backoff = Backoff()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while batch := self._take_batch():
                try:
                    error = await self._writer.write(batch)
                except Exception as exc:  # the sender must outlive any bug
                    logger.exception("sender: unexpected error; the batch is failed")
                    for item in batch:
                        self._writer.reject(item, exc)
                    error = exc
                if error is None:
                    backoff.reset()
                    self._availability.found(_WHAT)
                else:
                    await self._availability.pause(_WHAT, error, backoff)

    async def _execute(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send ``commands`` through the executor; one reply each (raises on errors)."""
        assert self._executor is not None
        return await self._executor(commands)

    def requeue(self, items: list[EventItem]) -> int:
        """Put emitted events back at the front of the buffer, in their order, while it
        has room (at least once: the event id dedupes); returns how many did not fit
        (dropped and counted)."""
        dropped = 0
        with self._lock:
            for item in reversed(items):
                if len(self._buffer) < self.settings.emit_buffer_size:
                    self._buffer.appendleft(item)
                else:
                    dropped += 1
        if dropped:
            self.stats.incr("dropped_remote", dropped)
        return dropped
