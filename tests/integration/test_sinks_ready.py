"""The first event after ``mozaiks-bus worker`` says it is ready reaches its sink.

A real worker service (the CLI, as operators run it) on a fresh sink, started many
times; each time one event is published the moment the ready line appears, and the
local HTTP target must receive it (bounded wait).
"""

from __future__ import annotations

from pathlib import Path

import pytest

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
