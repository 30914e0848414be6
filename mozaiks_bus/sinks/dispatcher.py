"""The sink dispatcher: durable streams in, one RQ job per event and sink out.

Contract
--------
* Each sink reads the durable streams through its own consumer group ``sink.<name>``
  (one :meth:`Bus.consumer` per pattern, all in that group), so every sink gets every
  matching event, independently of the others and of the services' own groups.
* With ``batch_max > 1`` (the default, 32), events are gathered per sink and queued as
  one batch job (:mod:`.batching`: per-delivery dedupe marks, ack after the batch is
  stored). With ``batch_max = 1``, for each event the handler enqueues **one** RQ job
  with the deterministic id
  ``keys.sink_job_id(sink, event_id)`` through RQ's atomic ``unique`` enqueue: a
  redelivered event (a dispatcher that crashed before its ack, a reclaim) finds the job
  and queues nothing. The stream entry is acked only when the handler returns, i.e.
  after the job is stored in Redis; a failed enqueue raises, so the entry is retried
  (and after ``max_deliveries`` lands in the type's dead-letter stream).
* Job data is JSON (RQ's ``JSONSerializer``, never pickle): the function path, the sink
  name and the event; ``meta`` holds the attempt count. No URL, header or secret: the
  worker looks the sink up in its own configuration when the job runs.
* A sink's groups start at the stream id stored in ``keys.sink_since(name)`` the first
  time any worker saw the sink: events published from then on are delivered (even to
  streams created later, even while no worker ran); history from before the sink
  existed is not replayed into a new endpoint.
* Finished jobs are kept ``result_ttl`` seconds (default 600, far beyond the 30 s a
  stream entry can stay unacked before it is reclaimed), which is the window in which a
  redelivery is recognised.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis
from rq import Queue
from rq.exceptions import DuplicateJobError
from rq.job import Job
from rq.serializers import JSONSerializer

from mozaiks_bus.bus import Bus
from mozaiks_bus.connection import text
from mozaiks_bus.event import Event
from mozaiks_bus.keys import Keys
from mozaiks_bus.retry import RetryPolicy
from mozaiks_bus.settings import BusSettings, SinkConfig
from mozaiks_bus.sinks.batching import FAILURE_TTL_S, DeliveryBatcher, enqueue_batch
from mozaiks_bus.sinks.state import record_pending

__all__ = [
    "DEFAULT_RESULT_TTL_S",
    "JOB_FUNCTION",
    "SinkDispatcher",
    "enqueue_delivery",
    "job_timeout",
    "record_sink_starts",
    "single_job",
    "sink_queue",
]

logger = logging.getLogger("mozaiks_bus.sinks")
JOB_FUNCTION = "mozaiks_bus.sinks.job.deliver"
DEFAULT_RESULT_TTL_S = 600
DISPATCH_MAX_DELIVERIES = 10


def sink_queue(client: redis.Redis, keys: Keys) -> Queue:
    """The RQ queue of every sink job (JSON serializer)."""
    return Queue(keys.sink_queue(), connection=client, serializer=JSONSerializer)


def job_timeout(sink: SinkConfig) -> int:
    """RQ's hard limit for one attempt: far above the HTTP deadline (at most 2 x
    ``timeout_s``), so RQ never has to kill a healthy attempt."""
    return int(sink.timeout_s * 3 + 30)


def single_job(keys: Keys, sink: SinkConfig, event: dict[str, Any], *, attempt: int,
               result_ttl: int, replay_of: str | None = None,
               **meta: Any) -> dict[str, Any]:
    """The ``enqueue_call``/``enqueue_at`` keyword arguments of one single delivery of
    ``event`` (its dict form) to ``sink``: the first, a retry or a replay alike."""
    event_id = str(event.get("id", ""))
    full: dict[str, Any] = {"sink": sink.name, "event_id": event_id, "attempt": attempt,
                            **meta}
    if replay_of:
        full["replay_of"] = replay_of
    return {"args": (sink.name, event), "job_id": keys.sink_job_id(sink.name, event_id,
                                                                   replay_of),
            "timeout": job_timeout(sink), "result_ttl": result_ttl,
            "failure_ttl": FAILURE_TTL_S, "description": f"sink {sink.name} event {event_id}",
            "meta": full}


def enqueue_delivery(
    queue: Queue, keys: Keys, sink: SinkConfig, event: Event, *,
    replay_of: str | None = None, result_ttl: int = DEFAULT_RESULT_TTL_S,
) -> tuple[str, bool]:
    """Queue the delivery of ``event`` to ``sink``; returns (job id, newly queued).

    ``False`` means the job already existed (a redelivery, or a second replay).
    """
    job_id = keys.sink_job_id(sink.name, event.id, replay_of)
    client = queue.connection
    if Job.exists(job_id, connection=client):
        return job_id, False
    pipe = client.pipeline(transaction=False)
    record_pending(pipe, keys, sink.name, job_id)
    pipe.execute()
    try:
        queue.enqueue_call(JOB_FUNCTION, unique=True, **single_job(
            keys, sink, event.to_dict(), attempt=0, result_ttl=result_ttl,
            replay_of=replay_of))
    except DuplicateJobError:
        return job_id, False
    return job_id, True


def _since(client: redis.Redis, keys: Keys, sink: str) -> str:
    """The stream id this sink's groups start at, set once (first worker wins)."""
    key = keys.sink_since(sink)
    seconds, micros = client.time()  # Redis's clock: the one stream ids are made of
    client.set(key, f"{seconds * 1000 + micros // 1000}-0", nx=True)
    value: Any = client.get(key)
    return text(value)


def record_sink_starts(client: redis.Redis, settings: BusSettings) -> dict[str, str]:
    """Fix (once, first caller wins) and return where each configured sink's groups
    start. Every process that takes events for a sink calls this before it says it is
    ready, so an event it accepts is never older than the sink's start."""
    return {sink.name: _since(client, settings.keys, sink.name) for sink in settings.sinks}


class SinkDispatcher:
    """Registers the consumer groups of every configured sink on a :class:`Bus`."""

    def __init__(self, bus: Bus, client: redis.Redis, *, concurrency: int = 16,
                 result_ttl: int = DEFAULT_RESULT_TTL_S, broker: redis.Redis | None = None
                 ) -> None:
        """``client``: the queue's Redis (RQ, the sinks' ledger); ``broker``: where the
        streams are, for the start positions (None: the same Redis)."""
        self.bus = bus
        self.keys = bus.config.keys
        self.queue = sink_queue(client, self.keys)
        self._broker = broker or client
        self.concurrency = concurrency
        self.result_ttl = result_ttl
        self.queued = 0
        self.duplicates = 0

    def starts(self) -> dict[str, str]:
        """The stream id each sink's groups start at (reads, and first time sets, Redis)."""
        return record_sink_starts(self._broker, self.bus.config)

    def register(self, starts: dict[str, str] | None = None) -> None:
        """One consumer group per sink (``sink.<name>``), one consumer per pattern.

        ``starts`` is :meth:`starts` (read here when not given); registering itself
        touches no Redis, so a caller can retry :meth:`starts` alone."""
        starts = self.starts() if starts is None else starts
        for sink in self.bus.config.sinks:
            start = starts[sink.name]
            handler = self._handler(sink) if sink.batch_max == 1 else self._batched(sink)
            # a batch fills only if that many handlers wait at once: two batches' worth
            concurrency = self.concurrency if sink.batch_max == 1 else \
                max(self.concurrency, 2 * sink.batch_max)
            for pattern in sink.patterns:
                self.bus.consumer(
                    pattern, group=self.keys.sink_group(sink.name),
                    concurrency=concurrency, max_deliveries=DISPATCH_MAX_DELIVERIES,
                    retry=RetryPolicy(base_s=0.5, max_s=10.0), start=start,
                )(handler)

    def _batched(self, sink: SinkConfig) -> Any:
        async def flush(events: list[Event]) -> None:
            _, queued, duplicates = await asyncio.to_thread(
                enqueue_batch, self.queue, self.keys, sink, events, result_ttl=self.result_ttl)
            self.queued += queued
            self.duplicates += duplicates
            if duplicates:
                logger.info("sink %s: %d redelivered event(s) already carried by a job",
                            sink.name, duplicates)

        batcher = DeliveryBatcher(flush, max_size=sink.batch_max,
                                  linger_s=sink.batch_linger_ms / 1000)

        async def dispatch(event: Event) -> None:
            await batcher.add(event)

        dispatch.__name__ = dispatch.__qualname__ = f"sink_dispatch_{sink.name}"
        return dispatch

    def _handler(self, sink: SinkConfig) -> Any:
        def dispatch(event: Event) -> None:  # sync: RQ is sync; runs in a worker thread
            job_id, queued = enqueue_delivery(self.queue, self.keys, sink, event,
                                              result_ttl=self.result_ttl)
            if queued:
                self.queued += 1
            else:
                self.duplicates += 1
                logger.info("sink %s: event %s already has job %s (redelivery)",
                            sink.name, event.id, job_id)

        dispatch.__name__ = dispatch.__qualname__ = f"sink_dispatch_{sink.name}"
        return dispatch
