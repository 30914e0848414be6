"""The reconciler's other paths, on a real Redis: jobs RQ failed, foreign workers, stale
pending ids, a scheduler lock left by a dead supervisor. (Killed workers: test_sinks_crash.)
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer

from mozaiks_bus import Event
from mozaiks_bus.connection import create_sync_client
from mozaiks_bus.keys import Keys
from mozaiks_bus.settings import load_settings
from mozaiks_bus.sinks import Reconciler, enqueue_delivery, list_dead_letters, sink_queue
from mozaiks_bus.sinks.job import SinkRuntime, install_runtime
from mozaiks_bus.sinks.worker import SinkRQWorker
from tests.integration.sink_support import sync_client

pytestmark = pytest.mark.integration


@pytest.fixture
def restore_signals() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)
    install_runtime(None)


def test_jobs_rq_failed_are_retried_or_dead_lettered(
    redis_url: str, key_prefix: str, restore_signals: None
) -> None:
    sinks = [{"name": name, "url": "http://127.0.0.1:9/x", "patterns": ["a.b"],
              "attempts": attempts, "backoff_base_s": 0.1}
             for name, attempts in (("twice", 2), ("once", 1))]
    settings = load_settings(broker_url=redis_url, prefix=key_prefix, sinks=sinks, env={})
    client = sync_client(redis_url)
    keys = Keys(key_prefix)
    queue = sink_queue(client, keys)
    events = [Event.create("a.b", {"n": n}, source="t") for n in range(2)]
    for sink, event in zip(settings.sinks, events, strict=True):
        enqueue_delivery(queue, keys, sink, event)
    # a job that raises inside RQ: its runtime's Redis is unreachable
    broken = create_sync_client("redis://127.0.0.1:1", retries=0, socket_connect_timeout=0.5)
    install_runtime(SinkRuntime(settings, broken))
    SinkRQWorker([queue], connection=client, serializer=JSONSerializer).work(
        burst=True, logging_level="CRITICAL")
    failed = FailedJobRegistry(queue=queue)
    assert len(failed.get_job_ids(cleanup=False)) == 2

    report = Reconciler(client, settings).sweep()
    assert (report.redriven, report.dead_lettered) == (1, 1)
    assert failed.get_job_ids(cleanup=False) == []
    twice = Job.fetch(keys.sink_job_id("twice", events[0].id), connection=client,
                      serializer=JSONSerializer)
    assert twice.get_status() == JobStatus.SCHEDULED
    assert twice.id in ScheduledJobRegistry(queue=queue).get_job_ids(cleanup=False)
    assert twice.meta["attempt"] == 1
    assert "failed in RQ" in twice.meta["last_error"]
    [dead] = list_dead_letters(client, settings, "once")
    assert dead.event["id"] == events[1].id
    assert dead.attempts == 1
    assert "failed in RQ" in dead.error
    client.close()


def test_foreign_workers_stale_pending_and_a_dead_supervisors_scheduler_lock(
    redis_url: str, key_prefix: str
) -> None:
    settings = load_settings(broker_url=redis_url, prefix=key_prefix, env={}, sinks=[
        {"name": "s", "url": "http://127.0.0.1:9/x", "patterns": ["a.b"]}])
    client = sync_client(redis_url)
    keys = Keys(key_prefix)
    queue = sink_queue(client, keys)
    reconciler = Reconciler(client, settings, dead_after_s=5)
    # a job STARTED by a worker that is not ours: left to RQ's own cleanup
    event = Event.create("a.b", {}, source="t")
    job_id, _ = enqueue_delivery(queue, keys, settings.sinks[0], event)
    job = Job.fetch(job_id, connection=client, serializer=JSONSerializer)
    client.lpop(queue.key)
    with client.pipeline() as pipe:
        job.prepare_for_execution("someone-elses-rq-worker", pipeline=pipe)
        pipe.zadd(StartedJobRegistry(queue=queue).key, {f"{job_id}:exec1": time.time() + 600})
        pipe.execute()
    # a pending id whose job is gone, and a scheduler lock of a supervisor with no liveness
    client.zadd(keys.sink_pending("s"), {"ghost-job": time.time() - 600})
    lock = RQScheduler.get_locking_key(queue.name)
    dead_owner = f"{keys.sink_worker_prefix()}host.999.scheduler"
    client.set(lock, dead_owner)

    report = reconciler.sweep()
    assert report.requeued == 0
    assert Job.fetch(job_id, connection=client, serializer=JSONSerializer).get_status() \
        == JobStatus.STARTED
    assert report.stale_pending == 1
    assert client.zscore(keys.sink_pending("s"), "ghost-job") is None
    assert report.scheduler_locks_released == 1
    assert client.get(lock) is None

    live_owner = f"{keys.sink_worker_prefix()}host.1000"
    reconciler.heartbeat(live_owner, pid=1000)
    client.set(lock, f"{live_owner}.scheduler")
    assert reconciler.sweep().scheduler_locks_released == 0
    assert client.get(lock) == f"{live_owner}.scheduler".encode()
    client.close()
