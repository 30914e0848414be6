"""Worker-crash reconciliation: no delivery is lost when a worker process dies.

Contract
--------
RQ alone notices a SIGKILLed worker only after the job's timeout plus 60 s, and only when
another worker runs its maintenance (see research: rq #2015, #2022). The sink worker
adds its own, faster path:

* **Liveness.** Every sink worker process (``<prefix>.sinkworker.<host>.<pid>...``)
  refreshes ``keys.sink_process(name)`` every ``heartbeat_s`` with a TTL of
  ``dead_after_s``.
* **Sweep** (every ``sweep_interval_s`` in every supervisor, and at once when a
  supervisor sees one of its own children exit): a job in RQ's StartedJobRegistry that
  is STARTED by one of *our* workers whose liveness key is gone was abandoned. The
  sweeper that removes its registry entry (ZREM: exactly one wins) requeues the same
  job at once: same job id, same event, hence the same ``Idempotency-Key``. The lost
  attempt counts as a failed one (the server may or may not have seen it); on the last
  attempt the delivery is dead-lettered instead.
* Jobs in RQ's FailedJobRegistry of the sink queue (RQ's own abandoned-job cleanup, a
  job timeout, a job stuck in RQ's intermediate queue, an unexpected error) are taken
  back the same way, retried after the sink's backoff or dead-lettered: every delivery
  ends delivered, skipped or in the sink's dead letters.
* A scheduler lock (``rq:scheduler-lock:<queue>``) held by a supervisor whose liveness
  key is gone is released (RQ's compare-and-delete), so another supervisor's scheduler
  takes over within a second instead of after RQ's 61 s lock TTL.
* Pending ids (``keys.sink_pending``) whose RQ job no longer exists are dropped.

Detection time: a child exit is seen within ``CHILD_POLL_S`` by its own supervisor; a
whole host or supervisor lost is seen within ``dead_after_s + sweep_interval_s``.
Workers that are not ours (a plain ``rq worker``) are left to RQ's own cleanup. A worker
that cannot refresh its liveness for ``dead_after_s`` (Redis unreachable from it) is
presumed dead: its attempt in flight may then be made twice, with the same idempotency
key (at least once, never lost).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.scheduler import RQScheduler
from rq.scripts import release_lock
from rq.utils import now

from mozaiks_bus.connection import text
from mozaiks_bus.retry import RetryPolicy
from mozaiks_bus.settings import BusSettings
from mozaiks_bus.sinks.batching import BATCH_FUNCTION, SETTLED, carried
from mozaiks_bus.sinks.config import find_sink
from mozaiks_bus.sinks.dead_letters import record_dead
from mozaiks_bus.sinks.dispatcher import DEFAULT_RESULT_TTL_S, sink_queue
from mozaiks_bus.sinks.policy import redact
from mozaiks_bus.sinks.state import record_attempt

__all__ = ["CHILD_POLL_S", "Reconciler", "SweepReport"]

logger = logging.getLogger("mozaiks_bus.sinks")
CHILD_POLL_S = 0.2
STALE_PENDING_S = 120.0


@dataclass(slots=True)
class SweepReport:
    """What one sweep did (counts)."""

    requeued: int = 0
    dead_lettered: int = 0
    redriven: int = 0
    stale_pending: int = 0
    scheduler_locks_released: int = 0


class Reconciler:
    """Liveness keys and the sweep, on a sync client."""

    def __init__(self, client: redis.Redis, settings: BusSettings, *, dead_after_s: float = 10.0,
                 result_ttl: int = DEFAULT_RESULT_TTL_S) -> None:
        self.client = client
        self.settings = settings
        self.keys = settings.keys
        self.queue: Queue = sink_queue(client, self.keys)
        self.dead_after_s = dead_after_s
        self.result_ttl = result_ttl

    # -- liveness -------------------------------------------------------------------------

    def heartbeat(self, name: str, **info: Any) -> None:
        """Mark process ``name`` alive for ``dead_after_s``."""
        self.client.set(self.keys.sink_process(name), json.dumps(info),
                        px=int(self.dead_after_s * 1000))

    def forget(self, name: str) -> None:
        """Drop a process's liveness key (it stopped or was found dead)."""
        self.client.delete(self.keys.sink_process(name))

    def _alive(self, names: Iterable[str]) -> dict[str, bool]:
        unique = sorted(set(names))
        pipe = self.client.pipeline(transaction=False)
        for name in unique:
            pipe.exists(self.keys.sink_process(name))
        return {name: bool(found) for name, found in zip(unique, pipe.execute(), strict=True)}

    # -- the sweep ------------------------------------------------------------------------

    def sweep(self, dead: Iterable[str] = ()) -> SweepReport:
        """One pass over started, failed and pending jobs (see the module docstring);
        ``dead`` names workers known to be dead (a supervisor's own exited children)."""
        report = SweepReport()
        known_dead = set(dead)
        self._sweep_started(known_dead, report)
        self._sweep_failed(report)
        self._sweep_pending(report)
        self._release_scheduler_lock(report)
        return report

    def _sweep_started(self, known_dead: set[str], report: SweepReport) -> None:
        registry = StartedJobRegistry(queue=self.queue)
        entries = registry.get_job_and_execution_ids(cleanup=False)
        if not entries:
            return
        jobs = Job.fetch_many([job_id for job_id, _ in entries], connection=self.client,
                              serializer=self.queue.serializer)
        ours = self.keys.sink_worker_prefix()
        owners = {job.worker_name for job in jobs if job is not None and job.worker_name}
        alive = self._alive(name for name in owners if name.startswith(ours))
        for (job_id, execution_id), job in zip(entries, jobs, strict=True):
            member = f"{job_id}:{execution_id}"
            if job is None:
                self.client.zrem(registry.key, member)
                continue
            owner = job.worker_name or ""
            lost = owner in known_dead or (owner.startswith(ours) and not alive.get(owner))
            if not lost or job.get_status(refresh=False) != JobStatus.STARTED:
                continue
            if not self.client.zrem(registry.key, member):
                continue  # another sweeper took it
            self._take_back(job, f"worker {owner} was lost during the attempt", report,
                            lost=True)

    def _sweep_failed(self, report: SweepReport) -> None:
        registry = FailedJobRegistry(queue=self.queue)
        for job_id in registry.get_job_ids(cleanup=False):
            try:
                job = Job.fetch(job_id, connection=self.client, serializer=self.queue.serializer)
            except NoSuchJobError:
                registry.remove(job_id)
                continue
            if not registry.remove(job):
                continue
            result = job.latest_result()
            text = (result.exc_string or "").strip().splitlines() if result else []
            reason = f"the job failed in RQ: {text[-1] if text else 'unknown error'}"
            self._take_back(job, reason, report, lost=False)

    def _take_back(self, job: Job, reason: str, report: SweepReport, *, lost: bool) -> None:
        """Requeue (or dead-letter) a job whose attempt ended without an outcome."""
        sink_name = str(job.meta.get("sink", ""))
        sink = find_sink(self.settings, sink_name)
        attempt = int(job.meta.get("attempt", 0)) + 1  # the run that never reported back
        job.meta["attempt"] = attempt
        error = redact(f"{reason} (attempt {attempt})")
        carried = self._unsettled(job, sink_name)  # (job id, event) of each delivery
        pipe = self.client.pipeline(transaction=True)
        if sink is None or attempt >= sink.attempts:
            record_attempt(pipe, self.keys, sink_name, status=None, error=error, lost=lost,
                           count=max(1, len(carried)))
            for job_id, event in carried:
                record_dead(pipe, self.keys, sink_name, job_id=job_id,
                            event_json=json.dumps(event), error=error, status=None,
                            attempts=attempt, replay_of=job.meta.get("replay_of"))
                if job_id != job.id:
                    pipe.set(self.keys.sink_mark(sink_name, str(event.get("id", ""))),
                             SETTLED, ex=self.result_ttl)
            pipe.zrem(self.keys.sink_pending(sink_name), job.id)
            pipe.execute()
            job.set_status(JobStatus.FINISHED)
            job.cleanup(ttl=self.result_ttl)
            report.dead_lettered += 1
            logger.error("sink %s: job %s dead-lettered: %s", sink_name, job.id, error)
            return
        record_attempt(pipe, self.keys, sink_name, status=None, error=error, lost=lost,
                       count=max(1, len(carried)))
        pipe.execute()
        job.meta.update(last_error=error, last_status=None)
        if lost:  # not the endpoint's fault: try again at once, ahead of the backlog
            self.queue.enqueue_job(job, at_front=True)
            report.requeued += 1
        else:
            delay = RetryPolicy(sink.backoff_base_s, sink.backoff_max_s).delay(attempt)
            self.queue.schedule_job(job, now() + timedelta(seconds=math.ceil(delay + 1)))
            report.redriven += 1
        logger.warning("sink %s: job %s taken back: %s", sink_name, job.id, error)

    def _unsettled(self, job: Job, sink_name: str) -> list[tuple[str, dict[str, Any]]]:
        """The deliveries ``job`` still carries: its one event, or the batch's events
        its marks still name (:func:`~.batching.carried`), each with the id its dead
        letter takes."""
        events: Any = job.args[1] if len(job.args) > 1 else {}
        if job.func_name != BATCH_FUNCTION:
            return [(job.id, events if isinstance(events, dict) else {})]
        batch = [event for event in events if isinstance(event, dict)]
        return [(self.keys.sink_job_id(sink_name, str(event.get("id", ""))), event)
                for event, _ in carried(self.client, self.keys, sink_name, job.id, batch)]

    def _sweep_pending(self, report: SweepReport) -> None:
        cutoff = time.time() - STALE_PENDING_S
        for sink in self.settings.sinks:
            key = self.keys.sink_pending(sink.name)
            rows: Any = self.client.zrangebyscore(key, "-inf", cutoff, start=0, num=100)
            for raw in rows:
                job_id = text(raw)
                if not Job.exists(job_id, connection=self.client):
                    self.client.zrem(key, job_id)
                    report.stale_pending += 1

    def _release_scheduler_lock(self, report: SweepReport) -> None:
        lock_key = RQScheduler.get_locking_key(self.queue.name)
        raw: Any = self.client.get(lock_key)
        owner = text(raw)
        suffix = ".scheduler"
        if not owner or not owner.startswith(self.keys.sink_worker_prefix()) \
                or not owner.endswith(suffix):
            return
        supervisor = owner.removesuffix(suffix)
        if not self._alive([supervisor])[supervisor] and release_lock(self.client, lock_key,
                                                                     owner):
            report.scheduler_locks_released += 1
            logger.warning("released the RQ scheduler lock of lost supervisor %s", supervisor)
