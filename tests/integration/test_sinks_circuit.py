"""The per-sink circuit breaker: its states on a real Redis, and the whole path.

Queued deliveries must wait while the circuit is open instead of burning their attempts,
and come back (probe, then a ramp) once the endpoint recovers.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mozaiks_bus.keys import Keys
from mozaiks_bus.settings import SinkConfig
from mozaiks_bus.sinks import CircuitBreaker, list_dead_letters, reset_circuit, sink_state
from tests.integration.sink_support import (
    WorkerProcess,
    publish,
    settings_for,
    sync_client,
    write_config,
)
from tests.integration.sink_target import Reply, Target
from tests.support import wait_until

pytestmark = pytest.mark.integration



def test_breaker_opens_probes_once_reopens_and_closes(redis_url: str, key_prefix: str) -> None:
    client = sync_client(redis_url)
    breaker = CircuitBreaker(client, Keys(key_prefix))
    sink = SinkConfig(name="api", url="http://127.0.0.1:1/x", patterns=["a.b"], timeout_s=1.0,
                      circuit_failures=3, circuit_open_s=0.5, circuit_ramp_s=0.0)
    gate = breaker.acquire(sink)
    assert gate.allowed
    for _ in range(2):
        breaker.record(sink, failure=True, gate=gate)
    assert breaker.state("api").state == "closed"
    breaker.record(sink, failure=True, gate=gate)
    assert breaker.state("api").state == "open"
    denied = breaker.acquire(sink)
    assert not denied.allowed
    assert 0.2 < denied.wait_s <= 0.5 + 0.25 + 0.01  # the rest of the open time + jitter
    time.sleep(0.55)
    probe = breaker.acquire(sink)
    assert probe.allowed
    assert probe.state == "half_open"
    assert not breaker.acquire(sink).allowed  # one probe at a time
    breaker.record(sink, failure=True, gate=probe)  # the probe failed: open again
    assert breaker.state("api").state == "open"
    time.sleep(0.55)
    probe = breaker.acquire(sink)
    assert probe.allowed
    breaker.record(sink, failure=False, gate=probe)
    state = breaker.state("api")
    assert (state.state, state.consecutive_failures, state.times_opened) == ("closed", 0, 2)
    assert breaker.acquire(sink).allowed
    client.close()


def test_ramp_lets_a_growing_share_through_and_reset_closes(
    redis_url: str, key_prefix: str
) -> None:
    client = sync_client(redis_url)
    breaker = CircuitBreaker(client, Keys(key_prefix))
    sink = SinkConfig(name="api", url="http://127.0.0.1:1/x", patterns=["a.b"],
                      circuit_failures=1, circuit_open_s=0.2, circuit_ramp_s=2.0)
    breaker.record(sink, failure=True, gate=breaker.acquire(sink))
    time.sleep(0.25)
    breaker.record(sink, failure=False, gate=breaker.acquire(sink))  # good probe: closed
    early = [breaker.acquire(sink) for _ in range(200)]
    allowed = sum(g.allowed for g in early)
    assert 5 <= allowed <= 60  # about 10 % at the start of the ramp
    assert all(0 <= g.wait_s <= 2.0 for g in early if not g.allowed)
    breaker.record(sink, failure=True, gate=early[0])
    settings = settings_for(redis_url, key_prefix)
    settings = settings.model_copy(update={"sinks": [sink]})
    reset_circuit(client, settings, "api")
    assert breaker.state("api").state == "closed"
    assert all(breaker.acquire(sink).allowed for _ in range(20))
    client.close()


def test_queued_deliveries_wait_for_an_open_circuit_instead_of_using_attempts(
    redis_url: str, key_prefix: str, tmp_path: Path, target: Target,
) -> None:
    target.script("/api", [], default=Reply(503))
    config = write_config(tmp_path / "bus.toml", url=redis_url, prefix=key_prefix, sinks=[{
        "name": "api", "url": target.url("/api"), "patterns": ["orders.created"],
        "attempts": 4, "backoff_base_s": 0.1, "backoff_max_s": 1.0, "timeout_s": 2.0,
        "circuit_failures": 2, "circuit_open_s": 1.0, "circuit_ramp_s": 0.5,
    }])
    worker = WorkerProcess(config, tmp_path / "worker.log").start()
    try:
        settings = settings_for(redis_url, key_prefix, config)
        publish(settings, "orders.created", [{"n": n} for n in range(6)])
        target.wait_for(lambda: len(target.received()) >= 2, 10, "the first failures")
        time.sleep(3.0)  # the outage
        target.script("/api", [], default=Reply(200))
        recovered_at = time.time()
        client = sync_client(redis_url)
        wait_until(lambda: sink_state(client, settings, "api").counters["delivered"] == 6, 30,
                   "every delivery after the recovery")
    finally:
        worker.stop()
    failed = [call for call in target.received() if call.at < recovered_at]
    state = sink_state(client, settings, "api")
    assert list_dead_letters(client, settings) == []
    # Without the breaker six events x four attempts would have hit the dead endpoint
    # within the outage and all died; with it: two failures, then only probes.
    assert len(failed) <= 8, len(failed)
    assert state.circuit.times_opened >= 1
    assert state.counters["circuit_waits"] > 0
    assert state.circuit.state == "closed"
    client.close()
