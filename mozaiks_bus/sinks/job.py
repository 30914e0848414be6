"""The RQ job: one attempt at delivering one event to one sink.

Contract
--------
``deliver(sink_name, event)`` is what the dispatcher enqueues (``JOB_FUNCTION``). Each
run makes at most one HTTP request and then, by the table in
:mod:`mozaiks_bus.sinks.policy`:

* returns ``{"outcome": "delivered" | "dead" | "skipped", ...}`` (the job finishes), or
* returns an ``rq.Retry`` so RQ's scheduler runs it again after the backoff. The wait is
  rounded *up* to whole seconds plus one, because RQ stores due times in whole seconds:
  a retry never comes earlier than the policy (or ``Retry-After``) asked.

The count of attempts *finished* lives in the job's ``meta`` (saved with each failed
attempt); a run that never reports back (a worker killed mid-call) is counted as one more
attempt by :mod:`mozaiks_bus.sinks.reconcile`, which finds it STARTED. A job that finds
the sink's circuit open is put back without using an attempt.

The request: ``sink.method`` to ``sink.url`` with the rendered body, ``Idempotency-Key``
= the event id (the same on every attempt and every replay), ``webhook-id`` = the event
id with ``webhook-timestamp``/``webhook-signature`` when the sink has a signing secret,
the sink's static headers, and its bearer token or API key read from the environment
just now. Redirects are not followed. Timeouts: connect ``min(timeout_s, 5)``, each read
and write ``timeout_s``, and the whole exchange ``timeout_s`` (checked while the
response body is read; at most 64 KiB of it is read): far below the RQ job timeout
(``3 x timeout_s + 30``).

Nothing secret is logged, returned or stored: errors and response excerpts pass through
:func:`~mozaiks_bus.sinks.policy.redact` with the sink's secret values.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import redis
from rq import Retry, get_current_job
from rq.job import Job

from mozaiks_bus import tracing
from mozaiks_bus._version import __version__
from mozaiks_bus.connection import create_sync_client
from mozaiks_bus.errors import ConfigError, InvalidEvent
from mozaiks_bus.event import Event
from mozaiks_bus.retry import RetryPolicy
from mozaiks_bus.settings import BusSettings, SinkConfig, load_settings
from mozaiks_bus.sinks.circuit import CircuitBreaker
from mozaiks_bus.sinks.config import SinkSecrets, find_sink, sink_secrets
from mozaiks_bus.sinks.dead_letters import record_dead
from mozaiks_bus.sinks.formats import Body, FormatError, SkipDelivery, render
from mozaiks_bus.sinks.policy import (
    Outcome,
    Verdict,
    classify_error,
    classify_status,
    parse_retry_after,
    redact,
)
from mozaiks_bus.sinks.signing import sign_headers
from mozaiks_bus.sinks.state import record_attempt, record_delivered, record_skipped

__all__ = ["CONNECT_TIMEOUT_S", "SinkRuntime", "deliver", "install_runtime", "runtime"]

logger = logging.getLogger("mozaiks_bus.sinks")
CONNECT_TIMEOUT_S = 5.0
READ_LIMIT = 64 * 1024
USER_AGENT = f"mozaiks-bus/{__version__}"


class SinkRuntime:
    """What jobs in one worker process share: settings, Redis, one HTTP client."""

    def __init__(self, settings: BusSettings, client: redis.Redis) -> None:
        self.settings = settings
        self.client = client
        self.keys = settings.keys
        self.breaker = CircuitBreaker(client, self.keys)
        self.http = httpx.Client(
            follow_redirects=False, trust_env=False, headers={"User-Agent": USER_AGENT},
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )
        self._pools: dict[str, ThreadPoolExecutor] = {}

    def pool(self, sink: SinkConfig) -> ThreadPoolExecutor:
        """The threads a batch to ``sink`` sends its requests on (``batch_concurrency``;
        httpx's client is thread-safe and pools the connections)."""
        pool = self._pools.get(sink.name)
        if pool is None:
            pool = self._pools[sink.name] = ThreadPoolExecutor(
                sink.batch_concurrency, thread_name_prefix=f"sink-{sink.name}")
        return pool

    def close(self) -> None:
        """Close the HTTP client and the batch threads (the Redis client belongs to the
        caller)."""
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)
        self.http.close()


_runtime: SinkRuntime | None = None
_runtime_lock = threading.Lock()


def install_runtime(value: SinkRuntime | None) -> None:
    """Set the runtime jobs of this process use (the worker does, at start)."""
    global _runtime  # noqa: PLW0603  (one per process, by design)
    _runtime = value


def runtime() -> SinkRuntime:
    """The installed runtime, else one built from the environment and config file (so
    a plain ``rq worker`` on the sink queue works too)."""
    global _runtime  # noqa: PLW0603
    with _runtime_lock:
        if _runtime is None:
            settings = load_settings()
            if not settings.broker_url:
                raise ConfigError("broker_url", "the sink worker needs a broker (redis://...)")
            _runtime = SinkRuntime(settings, create_sync_client(str(settings.queue_redis_url)))
        return _runtime


def deliver(sink_name: str, event: dict[str, Any]) -> dict[str, Any] | Retry:
    """The RQ job function (see the module docstring)."""
    job = get_current_job()
    if job is None:
        raise RuntimeError("deliver() runs inside an RQ job")
    return _run(runtime(), job, sink_name, event)


def retry_in(job: Job, delay_s: float) -> Retry:
    """An ``rq.Retry`` that brings ``job`` back no earlier than ``delay_s`` from now."""
    whole = 0 if delay_s <= 0 else math.ceil(delay_s + 1)
    return Retry(max=(job.number_of_retries or 0) + 1, interval=[whole])


def _run(rt: SinkRuntime, job: Job, sink_name: str,
         event_data: dict[str, Any]) -> dict[str, Any] | Retry:
    sink = find_sink(rt.settings, sink_name)
    attempt = int(job.meta.get("attempt", 0))
    if sink is None:
        return _dead(rt, job, sink_name, event_data, attempt=attempt, attempted=False,
                     outcome=Outcome(Verdict.DEAD, f"sink {sink_name} is no longer configured"))
    try:
        event = Event.from_dict(event_data)
    except InvalidEvent as exc:
        return _dead(rt, job, sink_name, event_data, attempt=attempt, attempted=False,
                     outcome=Outcome(Verdict.DEAD, str(exc)))
    gate = rt.breaker.acquire(sink)
    if not gate.allowed:
        rt.client.hincrby(rt.keys.sink_state(sink.name), "circuit_waits", 1)
        return retry_in(job, gate.wait_s)
    attempt += 1  # saved with the outcome; a run that dies here is counted by reconcile
    try:
        secrets = sink_secrets(sink)
        body = render(sink.format, event, sink.format_options)
    except SkipDelivery as exc:
        pipe = rt.client.pipeline(transaction=True)
        record_skipped(pipe, rt.keys, sink.name, job.id)
        pipe.execute()
        return {"outcome": "skipped", "reason": str(exc)}
    except ConfigError as exc:  # a variable is missing: retry, the operator may fix it
        return _settle(rt, job, sink, event_data, attempt=attempt,
                       outcome=Outcome(Verdict.RETRY, str(exc)))
    except FormatError as exc:
        return _settle(rt, job, sink, event_data, attempt=attempt,
                       outcome=Outcome(Verdict.DEAD, str(exc)))
    with tracing.span("client", f"deliver {sink.name}", event.type, event.id,
                      event.traceparent):
        outcome = attempt_request(rt.http, sink, event, body, secrets)
    rt.breaker.record(sink, failure=outcome.breaker_failure, gate=gate)
    return _settle(rt, job, sink, event_data, attempt=attempt, outcome=outcome)


def request_headers(sink: SinkConfig, event: Event, body: Body,
                    secrets: SinkSecrets) -> dict[str, str]:
    """Every header of one attempt (secrets included: never log the result)."""
    headers = {"Content-Type": body.content_type, "Accept": "application/json",
               **sink.headers, **body.headers, "Idempotency-Key": event.id,
               **tracing.traceparent_headers(event.traceparent)}
    if secrets.bearer:
        headers["Authorization"] = f"Bearer {secrets.bearer}"
    if secrets.api_key and sink.api_key_header:
        headers[sink.api_key_header] = secrets.api_key
    if secrets.signing_keys:
        headers.update(sign_headers(secrets.signing_keys, event.id, body.content))
    return headers


def attempt_request(http: httpx.Client, sink: SinkConfig, event: Event, body: Body,
                    secrets: SinkSecrets) -> Outcome:
    """Make the one HTTP request of an attempt and classify what came back."""
    headers = request_headers(sink, event, body, secrets)
    timeout = httpx.Timeout(sink.timeout_s, connect=min(sink.timeout_s, CONNECT_TIMEOUT_S))
    deadline = time.monotonic() + sink.timeout_s
    try:
        with http.stream(sink.method, sink.url, content=body.content, headers=headers,
                         timeout=timeout) as response:
            excerpt = _read_some(response, deadline)
    except (httpx.HTTPError, TimeoutError) as exc:
        failed = classify_error(exc)
        return Outcome(failed.verdict, redact(failed.error, secrets.values))
    status = response.status_code
    verdict = classify_status(status, accept_409=sink.accept_409)
    if verdict is Verdict.DELIVERED:
        return Outcome(verdict, status=status)
    text = excerpt.decode("utf-8", errors="replace")
    error = redact(f"HTTP {status}: {text}", secrets.values)
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    return Outcome(verdict, error, status, retry_after)


def _read_some(response: httpx.Response, deadline: float) -> bytes:
    """Up to READ_LIMIT bytes of the body, within the attempt's total deadline."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_raw():
        chunks.append(chunk)
        size += len(chunk)
        if time.monotonic() > deadline:
            raise TimeoutError("total timeout while reading the response")
        if size >= READ_LIMIT:
            break
    return b"".join(chunks)[:READ_LIMIT]


def _settle(rt: SinkRuntime, job: Job, sink: SinkConfig, event_data: dict[str, Any], *,
            attempt: int, outcome: Outcome) -> dict[str, Any] | Retry:
    event_id = event_data.get("id")
    if outcome.verdict is Verdict.DELIVERED:
        pipe = rt.client.pipeline(transaction=True)
        record_delivered(pipe, rt.keys, sink.name, job.id, outcome.status or 0)
        pipe.execute()
        logger.debug("sink %s: event %s delivered on attempt %d", sink.name, event_id, attempt)
        return {"outcome": "delivered", "status": outcome.status, "attempt": attempt}
    if outcome.verdict is Verdict.RETRY and attempt < sink.attempts:
        policy = RetryPolicy(base_s=sink.backoff_base_s, max_s=sink.backoff_max_s)
        delay = policy.delay(attempt, retry_after=outcome.retry_after_s)
        pipe = rt.client.pipeline(transaction=True)
        record_attempt(pipe, rt.keys, sink.name, status=outcome.status, error=outcome.error)
        pipe.execute()
        job.meta.update(attempt=attempt, last_error=outcome.error, last_status=outcome.status)
        job.save_meta()  # type: ignore[no-untyped-call]
        logger.info("sink %s: event %s attempt %d/%d failed (%s); retry in %.1fs",
                    sink.name, event_id, attempt, sink.attempts, outcome.error, delay)
        return retry_in(job, delay)
    return _dead(rt, job, sink.name, event_data, attempt=attempt, outcome=outcome,
                 attempted=True)


def _dead(rt: SinkRuntime, job: Job, sink_name: str, event_data: dict[str, Any], *,
          attempt: int, outcome: Outcome, attempted: bool) -> dict[str, Any]:
    """Dead-letter the delivery; ``attempted``: this run made an attempt to count."""
    pipe = rt.client.pipeline(transaction=True)
    if attempted:
        record_attempt(pipe, rt.keys, sink_name, status=outcome.status, error=outcome.error)
    record_dead(pipe, rt.keys, sink_name, job_id=job.id, event_json=json.dumps(event_data),
                error=outcome.error, status=outcome.status, attempts=attempt,
                replay_of=job.meta.get("replay_of"))
    pipe.execute()
    logger.error("sink %s: event %s dead-lettered after %d attempt(s): %s",
                 sink_name, event_data.get("id"), attempt, outcome.error)
    return {"outcome": "dead", "status": outcome.status, "attempt": attempt}
