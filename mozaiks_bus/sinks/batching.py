"""First attempts in batches: many deliveries to one sink in one RQ job.

An RQ job costs about 20 Redis round trips and a few milliseconds of bookkeeping, far
more than the HTTP call it makes; one job per delivery caps a sink at a few hundred
deliveries a second. So the dispatcher gathers a sink's events for up to
``batch_linger_ms`` (or until ``batch_max``), and queues one job for them
(:func:`enqueue_batch`, run by :mod:`.batch_job`). Retries stay single jobs.

Contract
--------
* **Dedupe per delivery.** Each (sink, event) has a mark (``keys.sink_mark``) naming the
  job that carries it: the batch, later its retry job, or ``settled`` once delivered,
  skipped or dead-lettered. It is taken with ``SET NX`` before the batch is queued. A
  redelivered stream entry whose mark names a job that exists (or ``settled``) queues
  nothing; a mark naming a job that was never stored (the enqueue failed after the
  marks were taken) is taken over. A batch id is new each time, since a redelivery can
  regroup events differently.
* **Ack after storage.** :meth:`DeliveryBatcher.add` returns once the batch holding the
  event is stored in RQ (the consumer then acks the entry), or raises (the entry is
  retried, and its mark taken over).
* Marks live ``result_ttl`` plus the job's timeout, refreshed as they change: the window
  in which a redelivery is recognised, as a finished single job's ``result_ttl`` was.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any

import redis
from rq import Queue
from rq.job import Job

from mozaiks_bus.connection import text
from mozaiks_bus.event import Event
from mozaiks_bus.keys import Keys
from mozaiks_bus.settings import SinkConfig
from mozaiks_bus.sinks.state import record_pending

__all__ = ["BATCH_FUNCTION", "SETTLED", "DeliveryBatcher", "batch_timeout", "carried",
           "enqueue_batch", "mark_ttl"]

BATCH_FUNCTION = "mozaiks_bus.sinks.batch_job.deliver_batch"
SETTLED = "settled"
FAILURE_TTL_S = 7 * 24 * 3600


def batch_timeout(sink: SinkConfig, size: int) -> int:
    """RQ's hard limit for a batch: every round of ``batch_concurrency`` requests may
    take two ``timeout_s``, plus a margin; RQ never kills a healthy batch."""
    rounds = math.ceil(max(size, 1) / sink.batch_concurrency)
    return int(rounds * sink.timeout_s * 2 + 30)


def mark_ttl(sink: SinkConfig, result_ttl: int) -> int:
    """How long a delivery's mark lives."""
    return result_ttl + batch_timeout(sink, sink.batch_max)


def enqueue_batch(queue: Queue, keys: Keys, sink: SinkConfig, events: list[Event], *,
                  result_ttl: int) -> tuple[str | None, int, int]:
    """Queue one job delivering the new ones of ``events`` to ``sink``; returns (its
    id or None when every event was already carried, queued, duplicates)."""
    client = queue.connection
    batch_id = keys.sink_batch_id(sink.name)
    ttl = mark_ttl(sink, result_ttl)
    marks = [keys.sink_mark(sink.name, event.id) for event in events]
    pipe = client.pipeline(transaction=False)
    for mark in marks:
        pipe.set(mark, batch_id, nx=True, ex=ttl)
        pipe.get(mark)
    replies = pipe.execute()
    fresh: list[Event] = []
    duplicates = 0
    for index, (event, mark) in enumerate(zip(events, marks, strict=True)):
        taken, holder = replies[2 * index], text(replies[2 * index + 1])
        if not taken:
            if holder == SETTLED or Job.exists(holder, connection=client):
                duplicates += 1
                continue
            client.set(mark, batch_id, ex=ttl)  # its job was never stored: take it over
        fresh.append(event)
    if not fresh:
        return None, 0, duplicates
    pipe = client.pipeline(transaction=False)
    record_pending(pipe, keys, sink.name, batch_id)
    pipe.execute()
    queue.enqueue_call(
        BATCH_FUNCTION, args=(sink.name, [event.to_dict() for event in fresh]),
        job_id=batch_id, timeout=batch_timeout(sink, len(fresh)), result_ttl=result_ttl,
        failure_ttl=FAILURE_TTL_S, description=f"sink {sink.name}: {len(fresh)} events",
        meta={"sink": sink.name, "attempt": 0, "events": len(fresh)},
    )
    return batch_id, len(fresh), duplicates


def carried(client: redis.Redis, keys: Keys, sink_name: str, batch_id: str,
            events: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str]]:
    """``(event, mark)`` of each delivery the batch ``batch_id`` still carries: its mark
    names the batch (or expired), not ``settled`` nor a single job it was handed to."""
    marks = [keys.sink_mark(sink_name, str(event.get("id", ""))) for event in events]
    held = client.mget(marks) if marks else []
    return [(event, mark) for event, mark, value in zip(events, marks, held, strict=True)
            if value is None or text(value) == batch_id]


class DeliveryBatcher:
    """Gathers one sink's events on the bus loop and flushes them as batches."""

    def __init__(self, flush: Callable[[list[Event]], Awaitable[Any]], *, max_size: int,
                 linger_s: float) -> None:
        self._flush = flush
        self.max_size = max_size
        self.linger_s = linger_s
        self._items: list[tuple[Event, asyncio.Future[None]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()

    async def add(self, event: Event) -> None:
        """Put ``event`` in the next batch; returns once that batch is stored."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._items.append((event, future))
        if len(self._items) >= self.max_size:
            self._flush_now()
        elif self._timer is None:
            self._timer = loop.call_later(self.linger_s, self._flush_now)
        await future

    def _flush_now(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        items, self._items = self._items, []
        if items:
            task = asyncio.get_running_loop().create_task(self._send(items))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, items: list[tuple[Event, asyncio.Future[None]]]) -> None:
        try:
            await self._flush([event for event, _ in items])
        except Exception as exc:  # noqa: BLE001  # each waiting handler raises it: retried
            for _, future in items:
                if not future.done():
                    future.set_exception(exc)
            return
        for _, future in items:
            if not future.done():
                future.set_result(None)
