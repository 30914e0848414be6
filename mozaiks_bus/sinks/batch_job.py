"""The RQ job of a batch: the first attempt at each of many deliveries to one sink.

Contract
--------
``deliver_batch(sink_name, events)`` is what :func:`~.batching.enqueue_batch` queues.

* The circuit is asked once for the whole batch; an open circuit puts the batch back
  (``rq.Retry``) without using an attempt.
* Only deliveries whose mark still names this batch are sent: a batch re-run after its
  worker was lost does not send again what it had finished (``settled``) or handed to
  a single retry job.
* The others are sent ``batch_concurrency`` at a time over the worker's one HTTP client,
  each exactly as a single job sends it (:func:`~.job.attempt_request`: the same
  ``Idempotency-Key``, signature and timeouts).
* Each gets its own outcome, written in one MULTI with the marks: delivered, skipped or
  dead-lettered ones are ``settled``; a retryable failure (attempts left) becomes a
  single job (``keys.sink_job_id``, the same id a single delivery has) scheduled after
  its own backoff (or ``Retry-After``), with the attempt counted. From then on it is a
  single delivery like any other (:mod:`.job`).
* ``meta["attempt"]`` counts the attempts the whole batch already used: a batch taken
  back after its worker was lost (:mod:`.reconcile`) runs again with it raised by one,
  so the cut-off attempt counts for each of its deliveries.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from rq import Queue, Retry, get_current_job
from rq.job import Job

from mozaiks_bus import tracing
from mozaiks_bus.errors import ConfigError, InvalidEvent
from mozaiks_bus.event import Event
from mozaiks_bus.keys import Keys
from mozaiks_bus.retry import RetryPolicy
from mozaiks_bus.settings import SinkConfig
from mozaiks_bus.sinks.batching import SETTLED, carried, mark_ttl
from mozaiks_bus.sinks.circuit import Gate
from mozaiks_bus.sinks.config import find_sink, sink_secrets
from mozaiks_bus.sinks.dead_letters import record_dead
from mozaiks_bus.sinks.dispatcher import (
    DEFAULT_RESULT_TTL_S,
    JOB_FUNCTION,
    single_job,
    sink_queue,
)
from mozaiks_bus.sinks.formats import FormatError, SkipDelivery, render
from mozaiks_bus.sinks.job import SinkRuntime, attempt_request, retry_in, runtime
from mozaiks_bus.sinks.policy import Outcome, Verdict
from mozaiks_bus.sinks.state import (
    record_attempt,
    record_delivered,
    record_pending,
    record_skipped,
)

__all__ = ["deliver_batch", "run_batch"]

logger = logging.getLogger("mozaiks_bus.sinks")
_SKIPPED = Outcome(Verdict.DELIVERED, "skipped")  # a sentinel: the format sends nothing


def deliver_batch(sink_name: str, events: list[dict[str, Any]]) -> dict[str, Any] | Retry:
    """The RQ job function (see the module docstring)."""
    job = get_current_job()
    if job is None:
        raise RuntimeError("deliver_batch() runs inside an RQ job")
    return run_batch(runtime(), job, sink_name, events)


def run_batch(rt: SinkRuntime, job: Job, sink_name: str,
              raw_events: list[dict[str, Any]]) -> dict[str, Any] | Retry:
    """Run one batch job (``job`` is its RQ job)."""
    keys = rt.keys
    attempt = int(job.meta.get("attempt", 0)) + 1
    todo = carried(rt.client, keys, sink_name, job.id, raw_events)
    sink = find_sink(rt.settings, sink_name)
    if sink is None:
        outcome = Outcome(Verdict.DEAD, f"sink {sink_name} is no longer configured")
        return _settle(rt, job, sink_name, None, [(raw, mark, outcome) for raw, mark in todo],
                       attempt=attempt - 1)
    gate = rt.breaker.acquire(sink)
    if not gate.allowed:
        rt.client.hincrby(keys.sink_state(sink.name), "circuit_waits", 1)
        return retry_in(job, gate.wait_s)
    if gate.state != "closed" and len(todo) > 1:
        # a probe (half-open) or a ramp share is one request, not a batch: the rest
        # go back as single jobs that each ask the breaker, no attempt used
        _hand_back(rt, job, sink, todo[1:], attempt=attempt - 1)
        todo = todo[:1]
    outcomes = list(rt.pool(sink).map(lambda item: _attempt(rt, sink, item[0]), todo))
    _report(rt, sink, gate, outcomes)
    return _settle(rt, job, sink_name, sink,
                   [(raw, mark, outcome) for (raw, mark), outcome in zip(todo, outcomes,
                                                                           strict=True)],
                   attempt=attempt)


def _report(rt: SinkRuntime, sink: SinkConfig, gate: Gate, outcomes: list[Outcome]) -> None:
    """Tell the breaker each outcome as if the attempts had been single jobs, one after
    the other: a success after a failure resets the count (the breaker skips successes
    only while it knows of no failure), so scattered failures do not add up."""
    failures = gate.failures
    for outcome in outcomes:
        if outcome is _SKIPPED:
            continue
        rt.breaker.record(sink, failure=outcome.breaker_failure,
                          gate=replace(gate, failures=failures))
        failures = failures + 1 if outcome.breaker_failure else 0


def _hand_back(rt: SinkRuntime, job: Job, sink: SinkConfig,
               items: list[tuple[dict[str, Any], str]], *, attempt: int) -> None:
    """Queue ``items`` as single jobs now (their marks follow), with ``attempt`` used."""
    keys, queue = rt.keys, sink_queue(rt.client, rt.keys)
    result_ttl = job.result_ttl or DEFAULT_RESULT_TTL_S
    ttl = mark_ttl(sink, result_ttl)
    jobs = [single_job(keys, sink, raw, attempt=attempt, result_ttl=result_ttl)
            for raw, _ in items]
    pipe = rt.client.pipeline(transaction=True)
    for (_, mark), kwargs in zip(items, jobs, strict=True):
        record_pending(pipe, keys, sink.name, kwargs["job_id"])
        pipe.set(mark, kwargs["job_id"], ex=ttl)
    pipe.execute()
    for kwargs in jobs:
        queue.enqueue_call(JOB_FUNCTION, **kwargs)


def _attempt(rt: SinkRuntime, sink: SinkConfig, raw: dict[str, Any]) -> Outcome:
    """One delivery's attempt, as a single job makes it (never raises)."""
    try:
        event = Event.from_dict(raw)
    except InvalidEvent as exc:
        return Outcome(Verdict.DEAD, str(exc))
    try:
        secrets = sink_secrets(sink)
        body = render(sink.format, event, sink.format_options)
    except SkipDelivery:
        return _SKIPPED
    except ConfigError as exc:  # a variable is missing: retry, the operator may fix it
        return Outcome(Verdict.RETRY, str(exc))
    except FormatError as exc:
        return Outcome(Verdict.DEAD, str(exc))
    with tracing.span("client", f"deliver {sink.name}", event.type, event.id,
                      event.traceparent):
        return attempt_request(rt.http, sink, event, body, secrets)


def _settle(rt: SinkRuntime, job: Job, sink_name: str, sink: SinkConfig | None,
            results: list[tuple[dict[str, Any], str, Outcome]], *, attempt: int
            ) -> dict[str, Any]:
    """Every outcome, the marks and the retry jobs; ``attempt`` is the attempt number
    these outcomes come from (0: none was made)."""
    keys, counts = rt.keys, {"delivered": 0, "skipped": 0, "retrying": 0, "dead": 0}
    result_ttl = job.result_ttl or DEFAULT_RESULT_TTL_S
    ttl = mark_ttl(sink, result_ttl) if sink is not None else result_ttl
    queue = sink_queue(rt.client, keys)
    retries: list[tuple[dict[str, Any], Outcome]] = []
    pipe = rt.client.pipeline(transaction=True)
    for raw, mark, outcome in results:
        event_id = str(raw.get("id", ""))
        if outcome is _SKIPPED:
            record_skipped(pipe, keys, sink_name, job.id)
            counts["skipped"] += 1
        elif outcome.verdict is Verdict.DELIVERED:
            record_delivered(pipe, keys, sink_name, job.id, outcome.status or 0)
            counts["delivered"] += 1
        elif sink is not None and outcome.verdict is Verdict.RETRY and attempt < sink.attempts:
            record_attempt(pipe, keys, sink_name, status=outcome.status, error=outcome.error)
            retry_id = keys.sink_job_id(sink_name, event_id)
            record_pending(pipe, keys, sink_name, retry_id)
            pipe.set(mark, retry_id, ex=ttl)
            retries.append((raw, outcome))
            counts["retrying"] += 1
            logger.info("sink %s: event %s attempt %d/%d failed (%s); retried on its own",
                        sink_name, event_id, attempt, sink.attempts, outcome.error)
            continue
        else:
            if attempt:
                record_attempt(pipe, keys, sink_name, status=outcome.status,
                               error=outcome.error)
            record_dead(pipe, keys, sink_name, job_id=keys.sink_job_id(sink_name, event_id),
                        event_json=json.dumps(raw), error=outcome.error, status=outcome.status,
                        attempts=attempt, replay_of=None)
            counts["dead"] += 1
            logger.error("sink %s: event %s dead-lettered after %d attempt(s): %s",
                         sink_name, event_id, attempt, outcome.error)
        pipe.set(mark, SETTLED, ex=ttl)
    pipe.zrem(keys.sink_pending(sink_name), job.id)
    pipe.execute()
    if sink is not None and retries:
        _schedule_retries(queue, keys, sink, retries, attempt=attempt, result_ttl=result_ttl)
    return {"outcome": "batch", "attempt": attempt, **counts}


def _schedule_retries(queue: Queue, keys: Keys, sink: SinkConfig,
                      retries: list[tuple[dict[str, Any], Outcome]], *, attempt: int,
                      result_ttl: int) -> None:
    """One single job per failed delivery, each after its own backoff (rounded up to
    whole seconds plus one, as :func:`~.job.retry_in` does: RQ's due times are whole
    seconds, and a retry never comes earlier than asked)."""
    policy = RetryPolicy(base_s=sink.backoff_base_s, max_s=sink.backoff_max_s)
    for raw, outcome in retries:
        delay = policy.delay(attempt, retry_after=outcome.retry_after_s)
        wait = 0 if delay <= 0 else math.ceil(delay + 1)
        queue.enqueue_at(
            datetime.now(UTC) + timedelta(seconds=wait), JOB_FUNCTION,
            **single_job(keys, sink, raw, attempt=attempt, result_ttl=result_ttl,
                         last_error=outcome.error, last_status=outcome.status))
