"""The first event after ``mozaiks-bus worker`` says it is ready reaches its sink.

A real worker service (the CLI, as operators run it) on a fresh sink, started many
times; each time one event is published the moment the ready line appears, and the
local HTTP target must receive it (bounded wait).
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.integration.server_harness import ALL, ServeProcess, auth
from tests.integration.sink_support import WorkerProcess, publish, settings_for, write_config
from tests.integration.sink_target import Target

pytestmark = [pytest.mark.integration, pytest.mark.slow]
RUNS = 4


@pytest.mark.parametrize("pattern", ["orders.created", "orders.*"])
def test_the_first_event_after_ready_is_delivered_every_time(
    redis_url: str, target: Target, tmp_path: Path, pattern: str,
) -> None:
    for run in range(RUNS):
        prefix = f"ready{run}{tmp_path.name[-6:].replace('_', '')}{len(pattern)}"
        sink = {"name": "hook", "url": target.url(f"/run{run}"), "patterns": [pattern],
                "attempts": 3, "backoff_base_s": 0.2, "backoff_max_s": 1.0, "timeout_s": 5.0}
        config = write_config(tmp_path / f"run{run}.toml", url=redis_url, prefix=prefix,
                              sinks=[sink])
        worker = WorkerProcess(config, tmp_path / f"worker{run}.log", cli=True,
                               options={"processes": 1})
        try:
            worker.start()
            [event] = publish(settings_for(redis_url, prefix, config), "orders.created",
                              [{"n": run}])
            target.wait_for(lambda run=run: len(target.received(f"/run{run}")) >= 1, 15,
                            f"run {run}'s first event at the sink")
            assert target.received(f"/run{run}")[0].headers["idempotency-key"] == event.id
        finally:
            worker.stop()


def test_an_event_accepted_by_a_ready_api_before_any_worker_ran_reaches_the_sink(
    redis_url: str, target: Target, tmp_path: Path, key_prefix: str,
) -> None:
    """What `up` (and any API configured with sinks) promises: once /readyz says ready,
    an accepted event reaches every configured sink, even if no worker has run yet."""
    sink = {"name": "hook", "url": target.url("/early"), "patterns": ["notification.*"],
            "attempts": 3, "backoff_base_s": 0.2, "backoff_max_s": 1.0, "timeout_s": 5.0}
    config = write_config(tmp_path / "bus.toml", url=redis_url, prefix=key_prefix,
                          sinks=[sink])
    api = ServeProcess(redis_url, key_prefix, sinks=json.dumps([sink])).start().wait_ready()
    try:
        posted = httpx.post(api.url + "/v1/events", headers=auth(ALL), timeout=10, json={
            "specversion": "1.0", "id": "early-1", "type": "notification.created",
            "source": "test", "data": {"notification_id": "n1", "user_id": "u",
                                       "notification_type": "info", "subject": "s",
                                       "message": "m"}})
        assert posted.status_code == 202, posted.text
    finally:
        api.stop()
    worker = WorkerProcess(config, tmp_path / "late-worker.log", options={"processes": 1})
    try:
        worker.start()
        target.wait_for(lambda: len(target.received("/early")) == 1, 20,
                        "the event accepted before the worker first ran")
    finally:
        worker.stop()
