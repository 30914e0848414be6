"""HTTP sinks end to end: publish -> durable stream -> dispatcher -> RQ -> HTTP target.

Real redis-server (the session's, isolated by prefix: the RQ queue name carries it), real
worker service processes, real local HTTP targets that fail on cue
(``tests.integration.sink_target``). Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from mozaiks_bus import Bus, Event, MozaiksBusError
from mozaiks_bus.keys import Keys
from mozaiks_bus.sinks import (
    enqueue_delivery,
    list_dead_letters,
    replay_dead_letter,
    replay_dead_letters,
    sink_queue,
    sink_state,
)
from mozaiks_bus.sinks.batching import enqueue_batch
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
TYPE = "orders.created"
SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()





def sink(name: str, url: str, **fields: Any) -> dict[str, Any]:
    base = {"name": name, "url": url, "patterns": [TYPE], "attempts": 5,
            "backoff_base_s": 0.2, "backoff_max_s": 5.0, "timeout_s": 5.0}
    return {**base, **fields}


def start(workers: list[WorkerProcess], tmp_path: Path, config: Path, **kw: Any
          ) -> WorkerProcess:
    worker = WorkerProcess(config, tmp_path / f"worker{len(workers)}.log", **kw).start()
    workers.append(worker)
    return worker


def test_503_with_retry_after_three_times_then_200_is_delivered_once_signed(
    redis_url: str, key_prefix: str, tmp_path: Path, target: Target,
    workers: list[WorkerProcess],
) -> None:
    target.script("/hook", [Reply(503, {"Retry-After": "2"})] * 3)
    config = write_config(tmp_path / "bus.toml", url=redis_url, prefix=key_prefix, sinks=[
        sink("hooks", target.url("/hook"), signing_secret_env="HOOK_SECRET"),
    ])
    start(workers, tmp_path, config, env={"HOOK_SECRET": SECRET}, cli=True)
    settings = settings_for(redis_url, key_prefix, config)
    [event] = publish(settings, TYPE, [{"order": 7}])

    target.wait_for(lambda: len(target.received("/hook")) >= 4, 30, "four attempts")
    client = sync_client(redis_url)
    wait_until(lambda: sink_state(client, settings, "hooks").counters["delivered"] == 1, 10,
               "the delivery to be recorded")
    calls = target.received("/hook")
    assert len(calls) == 4
    assert {call.headers["idempotency-key"] for call in calls} == {event.id}
    assert {call.headers["webhook-id"] for call in calls} == {event.id}
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(calls)]
    assert all(gap >= 2.0 for gap in gaps), gaps
    verifier = Webhook(SECRET)
    for call in calls:
        assert verifier.verify(call.body, call.headers) == json.loads(call.body)
        assert call.headers["content-type"] == "application/cloudevents+json"
    assert json.loads(calls[0].body)["id"] == event.id
    assert len({call.body for call in calls}) == 1  # the same bytes on every attempt

    state = sink_state(client, settings, "hooks")
    assert state.counters["attempts"] == 4
    assert state.counters["failed_attempts"] == 3
    assert state.queued == 0
    assert state.dead_letters == 0
    assert state.last_status == 200
    assert "503" in (state.last_error or "")
    time.sleep(1.0)  # nothing more may arrive
    assert len(target.received("/hook")) == 4  # delivered once: no fifth call
    client.close()


def test_a_hanging_target_is_cut_off_and_retried_while_other_sinks_are_served(
    redis_url: str, key_prefix: str, tmp_path: Path, target: Target,
    workers: list[WorkerProcess],
) -> None:
    target.script("/slow", [Reply(200, hang=True, hang_s=20)])
    config = write_config(tmp_path / "bus.toml", url=redis_url, prefix=key_prefix, sinks=[
        sink("slow", target.url("/slow"), patterns=["slow.thing"], timeout_s=1.0),
        sink("fast", target.url("/fast"), patterns=["fast.thing"]),
    ])
    start(workers, tmp_path, config)
    settings = settings_for(redis_url, key_prefix, config)
    [slow_event] = publish(settings, "slow.thing", [{"n": 0}])
    target.wait_for(lambda: len(target.received("/slow")) == 1, 10, "the hanging call")
    publish(settings, "fast.thing", [{"n": n} for n in range(3)])
    target.wait_for(lambda: len(target.received("/slow")) >= 2, 15, "the retry of /slow")
    target.wait_for(lambda: len(target.received("/fast")) == 3, 10, "the other sink")

    first, retry = target.received("/slow")[:2]
    # cut off at the 1 s timeout (not the 20 s hang), then retried with the same key
    assert 1.0 <= retry.at - first.at < 6.0
    assert retry.headers["idempotency-key"] == first.headers["idempotency-key"] == slow_event.id
    # the other sink was served while the first call hung
    assert all(call.at < first.at + 1.0 for call in target.received("/fast"))
    client = sync_client(redis_url)
    wait_until(lambda: sink_state(client, settings, "slow").counters["delivered"] == 1, 10,
               "the slow delivery")
    state = sink_state(client, settings, "slow")
    assert "Timeout" in (state.last_error or "")
    assert state.counters["attempts"] == 2
    assert sink_state(client, settings, "fast").counters["delivered"] == 3
    client.close()


def test_400_dead_letters_at_once_500_after_the_last_attempt_and_replay_delivers_once(
    redis_url: str, key_prefix: str, tmp_path: Path, target: Target,
    workers: list[WorkerProcess],
) -> None:
    target.script("/strict", [], default=Reply(400, body=b'{"error": "missing field"}'))
    target.script("/broken", [], default=Reply(500, body=b"boom"))
    config = write_config(tmp_path / "bus.toml", url=redis_url, prefix=key_prefix, sinks=[
        sink("strict", target.url("/strict"), patterns=["strict.thing"]),
        sink("broken", target.url("/broken"), patterns=["broken.thing"], attempts=3,
             circuit_failures=5, circuit_open_s=1.0, circuit_ramp_s=0.0),
    ])
    start(workers, tmp_path, config)
    settings = settings_for(redis_url, key_prefix, config)
    [strict_event] = publish(settings, "strict.thing", [{"n": 1}])
    broken_events = publish(settings, "broken.thing", [{"n": 1}, {"n": 2}])
    client = sync_client(redis_url)
    wait_until(lambda: len(list_dead_letters(client, settings)) == 3, 30, "three dead letters")
    assert len(target.received("/strict")) == 1  # at once: no retry
    assert len(target.received("/broken")) == 6  # two events x three attempts
    [strict_dead] = list_dead_letters(client, settings, "strict")
    assert strict_dead.status == 400
    assert strict_dead.attempts == 1
    assert strict_dead.error == 'HTTP 400: {"error": "missing field"}'
    assert strict_dead.event["id"] == strict_event.id
    broken_dead = list_dead_letters(client, settings, "broken")
    assert {d.event["id"] for d in broken_dead} == {e.id for e in broken_events}
    assert all(d.attempts == 3 and d.status == 500 for d in broken_dead)
    # six failures in a row: the breaker opened (the replays below wait for its probe)
    assert sink_state(client, settings, "broken").circuit.times_opened >= 1

    # fix the targets, then replay: one dead letter of "strict", all of "broken"
    target.script("/strict", [], default=Reply(200))
    target.script("/broken", [], default=Reply(200))
    first = broken_dead[0]
    # a replay that crashed after queueing its job but before deleting the dead letter:
    enqueue_delivery(sink_queue(client, Keys(key_prefix)), Keys(key_prefix),
                     settings.sinks[1], Event.from_dict(first.event), replay_of=first.id)
    replay_dead_letter(client, settings, "strict", strict_dead.id)
    job_ids = replay_dead_letters(client, settings, "broken")
    assert len(set(job_ids)) == 2
    with pytest.raises(MozaiksBusError):
        replay_dead_letter(client, settings, "strict", strict_dead.id)  # already replayed
    wait_until(lambda: sink_state(client, settings, "broken").counters["delivered"] == 2
               and sink_state(client, settings, "strict").counters["delivered"] == 1, 15,
               "the replays")
    time.sleep(1.0)  # nothing more may arrive
    assert len(target.received("/strict")) == 2
    assert len(target.received("/broken")) == 8  # each replayed dead letter delivered once
    replayed = target.received("/broken")[6:]
    assert {call.headers["idempotency-key"] for call in replayed} == {e.id for e in broken_events}
    assert list_dead_letters(client, settings) == []
    assert sink_state(client, settings, "broken").queued == 0
    client.close()


@pytest.mark.parametrize("batch_max", [1, 32])
def test_a_redelivered_event_never_queues_a_second_job(
    redis_url: str, key_prefix: str, tmp_path: Path, target: Target,
    workers: list[WorkerProcess], batch_max: int,
) -> None:
    """Single jobs dedupe by their deterministic id; batches by the delivery's mark."""
    config = write_config(tmp_path / "bus.toml", url=redis_url, prefix=key_prefix, sinks=[
        sink("hooks", target.url("/hook"), batch_max=batch_max),
    ])
    worker = start(workers, tmp_path, config)
    settings = settings_for(redis_url, key_prefix, config)
    [event] = publish(settings, TYPE, [{"order": 1}])
    client = sync_client(redis_url)
    wait_until(lambda: sink_state(client, settings, "hooks").counters["delivered"] == 1, 10,
               "the first delivery")

    async def rewind() -> None:  # the sink's group reads the stream again from the start
        async with Bus(config=settings) as bus:
            await bus.streams.replay_group(TYPE, "sink.hooks", from_id="0")

    asyncio.run(rewind())
    keys = Keys(key_prefix)
    if batch_max == 1:
        wait_until(lambda: "already has job" in worker.log(), 10, "the redelivery")
        job_id = keys.sink_job_id("hooks", event.id)
        assert job_id in worker.log()
        assert enqueue_delivery(sink_queue(client, keys), keys, settings.sinks[0],
                                event) == (job_id, False)
    else:
        wait_until(lambda: "already carried by a job" in worker.log(), 10, "the redelivery")
        assert client.get(keys.sink_mark("hooks", event.id)) == b"settled"
        assert enqueue_batch(sink_queue(client, keys), keys, settings.sinks[0], [event],
                             result_ttl=600) == (None, 0, 1)
    time.sleep(1.0)  # nothing more may arrive
    assert len(target.received("/hook")) == 1
    assert sink_state(client, settings, "hooks").queued == 0
    client.close()
