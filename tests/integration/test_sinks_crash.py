"""Sink worker crashes: a worker process SIGKILLed in the middle of an HTTP call.

Real redis-server, real worker service processes, a real local target. The target kills
the RQ worker process that is calling it (found through RQ's own worker registry) the
moment the request arrives, then hangs that request; later requests succeed. The
delivery must still happen, with the same idempotency key. The measured detection time
(kill -> the retry reaching the target) is printed (``pytest -s``), never asserted as a
speed: the bound used is only there so a broken reconciler fails instead of hanging.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from rq import Worker

from mozaiks_bus.keys import Keys
from mozaiks_bus.sinks import sink_queue, sink_state
from tests.integration.sink_support import (
    WorkerProcess,
    publish,
    settings_for,
    sync_client,
    write_config,
)
from tests.integration.sink_target import Recorded, Reply, Target
from tests.support import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TYPE = "orders.created"





def config(tmp_path: Path, url: str, prefix: str, target: Target, **fields: Any) -> Path:
    sink = {"name": "crashy", "url": target.url("/crash"), "patterns": [TYPE],
            "attempts": 4, "backoff_base_s": 0.2, "backoff_max_s": 2.0, "timeout_s": 20.0,
            **fields}
    return write_config(tmp_path / "bus.toml", url=url, prefix=prefix, sinks=[sink])


class Killer:
    """On the first request: find the RQ worker running the job and SIGKILL it (or its
    whole service, with ``group``), remember when."""

    def __init__(self, url: str, prefix: str, *, group: dict[int, WorkerProcess] | None = None
                 ) -> None:
        self.client = sync_client(url)
        self.queue = sink_queue(self.client, Keys(prefix))
        self.group = group
        self.killed_at: float | None = None
        self.victim: str | None = None

    def __call__(self, record: Recorded) -> None:
        if self.killed_at is not None:
            return
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            for worker in Worker.all(queue=self.queue):
                if worker.get_current_job_id() and worker.pid:
                    self.victim = worker.name
                    if self.group is not None:  # the whole service the worker belongs to
                        service = next(w for w in self.group.values()
                                       if f".{w.pid}.w" in worker.name)
                        service.kill()
                    else:
                        os.kill(worker.pid, signal.SIGKILL)
                    self.killed_at = time.time()
                    return
            time.sleep(0.01)
        raise AssertionError("no busy RQ worker found")


def check_delivered_after_kill(target: Target, killer: Killer, settings: Any, url: str,
                               event_id: str, what: str) -> float:
    target.wait_for(lambda: len(target.received("/crash")) >= 2, 45, f"the retry ({what})")
    client = sync_client(url)
    wait_until(lambda: sink_state(client, settings, "crashy").counters["delivered"] == 1, 10,
               "the delivery to be recorded")
    calls = target.received("/crash")
    assert killer.killed_at is not None
    assert len(calls) == 2
    assert [call.headers["idempotency-key"] for call in calls] == [event_id, event_id]
    state = sink_state(client, settings, "crashy")
    assert state.counters["lost_attempts"] == 1
    assert state.counters["attempts"] == 2
    assert state.queued == 0
    assert state.dead_letters == 0
    assert "lost" in (state.last_error or "")
    client.close()
    detection = calls[1].at - killer.killed_at
    print(f"\n[{what}] SIGKILL -> retry at the target: {detection:.2f}s")
    return detection


def test_a_worker_process_killed_mid_call_is_detected_by_its_supervisor(
    redis_url: str, key_prefix: str, tmp_path: Path, target: Target,
    workers: list[WorkerProcess],
) -> None:
    path = config(tmp_path, redis_url, key_prefix, target)
    target.script("/crash", [Reply(200, hang=True, hang_s=10)])
    killer = Killer(redis_url, key_prefix)
    target.on_request = killer
    worker = WorkerProcess(path, tmp_path / "w.log").start()
    workers.append(worker)
    settings = settings_for(redis_url, key_prefix, path)
    [event] = publish(settings, TYPE, [{"n": 1}])
    detection = check_delivered_after_kill(target, killer, settings, redis_url, event.id,
                                           "child SIGKILL, own supervisor")
    assert detection < 15
    assert "exited with code -9" in worker.log()


def test_a_whole_worker_service_killed_mid_call_is_recovered_by_another(
    redis_url: str, key_prefix: str, tmp_path: Path, target: Target,
    workers: list[WorkerProcess],
) -> None:
    path = config(tmp_path, redis_url, key_prefix, target)
    target.script("/crash", [Reply(200, hang=True, hang_s=10)])
    services = {n: WorkerProcess(path, tmp_path / f"w{n}.log", options={"processes": 1})
                for n in range(2)}
    for service in services.values():
        service.start()
        workers.append(service)
    killer = Killer(redis_url, key_prefix, group={s.pid: s for s in services.values()})
    target.on_request = killer
    settings = settings_for(redis_url, key_prefix, path)
    [event] = publish(settings, TYPE, [{"n": 1}])
    detection = check_delivered_after_kill(target, killer, settings, redis_url, event.id,
                                           "whole service SIGKILL, dead_after 3 s")
    assert detection < 20
    survivor = next(s for s in services.values() if s.proc and s.proc.poll() is None)
    assert "taken back" in survivor.log()
