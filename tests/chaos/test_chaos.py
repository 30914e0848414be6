"""The fault catalog, counted: for each fault, every event sent, every event that arrived,
and the difference. Lost must be 0 in every case; duplicates are allowed (at least once)
and counted; an unexpected id (one never sent) would be a bug.

Each case runs real processes against its own private ``redis-server`` (AOF
``always``): a consumer process (``tests.integration.durable_proc``, which records every
handler call in Redis before acking), a sink worker service, and a publisher in this
process that retries a failed ``await publish`` with the same event id (what a caller
of a confirmed publish does). Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from mozaiks_bus import Bus, MozaiksBusError, load_settings
from mozaiks_bus.connection import text
from mozaiks_bus.durable.spec import DEFAULT_CONCURRENCY
from mozaiks_bus.settings import (
    DEFAULT_CONSUMER_BLOCK_MS,
    DEFAULT_CONSUMER_CLAIM_INTERVAL_S,
    DEFAULT_CONSUMER_MIN_IDLE_S,
)
from tests.chaos.conftest import record
from tests.conftest import MakeRedisServer
from tests.integration.durable_proc import calls_key
from tests.integration.sink_support import WorkerProcess, settings_for, write_config
from tests.integration.sink_target import Reply, Target
from tests.redis_server import RedisServer
from tests.support import FAST, clean_env, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
TYPE = "orders.created"
AT_LEAST_ONCE = "at least once: lost 0"


class Consumer:
    """One consumer process of group ``chaos``; its output goes to a log file."""

    def __init__(self, url: str, prefix: str, log: Path, args: tuple[str, ...] = ()) -> None:
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.integration.durable_proc", url, prefix, TYPE,
                 "--mode", "list", "--group", "chaos", *(args or ("--concurrency", "32"))],
                cwd=ROOT, env=clean_env(), stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL)

    def ready(self) -> bool:
        return "ready" in self.log.read_text(errors="replace").splitlines()

    def wait_ready(self, timeout: float = 30) -> Consumer:
        wait_until(self.ready, timeout, f"consumer {self.proc.pid} ready")
        return self

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def consumers(tmp_path: Path) -> Iterator[Callable[..., Consumer]]:
    started: list[Consumer] = []

    def start(url: str, prefix: str, *args: str) -> Consumer:
        started.append(Consumer(url, prefix, tmp_path / f"consumer{len(started)}.log", args))
        return started[-1]

    yield start
    for consumer in started:
        consumer.stop()


def calls(url: str, prefix: str) -> list[str]:
    client = redis.Redis.from_url(url)
    try:
        return [text(v) for v in client.lrange(calls_key(prefix, TYPE), 0, -1)]
    except redis.RedisError:
        return []
    finally:
        client.close()


class Recovery:
    """The longest time from a fault to the moment every event confirmed before it had
    been handled (the chaos table's *recovered in*)."""

    def __init__(self) -> None:
        self.seconds: float | None = None

    def measure(self, url: str, prefix: str, before: list[str], since: float) -> None:
        """Wait (bounded) until every id of ``before`` was handled; keep the time."""
        wanted = set(before)
        wait_until(lambda: wanted <= set(calls(url, prefix)), 120,
                   "every event confirmed before the fault", every=0.02)
        elapsed = time.monotonic() - since
        self.seconds = max(self.seconds or 0.0, elapsed)


def publish(url: str, prefix: str, ids: list[str],
            fault: Callable[[int], None] | None = None, every: int = 50) -> None:
    """Publish ``ids`` durably; every ``every`` confirmed, start ``fault(count)`` in a
    thread (publishing goes on meanwhile: the fault hits traffic in flight); a failed
    publish is retried with the same id (bounded). Returns after every fault ended."""

    async def go() -> None:
        settings = load_settings(broker_url=url, prefix=prefix, publish_timeout_s=2.0,
                                 **{k: v for k, v in FAST.items() if k.startswith("health")})
        faults: list[asyncio.Task[None]] = []
        async with Bus(config=settings) as bus:
            for start in range(0, len(ids), every):
                for event_id in ids[start:start + every]:
                    deadline = time.monotonic() + 60
                    while True:
                        try:
                            await bus.publish(TYPE, {"id": event_id}, id=event_id,
                                              durable=True, fanout=False)
                            break
                        except MozaiksBusError:
                            if time.monotonic() > deadline:
                                raise
                            await asyncio.sleep(0.2)
                if fault is not None:
                    faults.append(asyncio.create_task(asyncio.to_thread(fault, start + every)))
            await asyncio.gather(*faults)

    asyncio.run(go())


def delivered(url: str, prefix: str, ids: list[str], timeout: float = 60) -> list[str]:
    wait_until(lambda: set(ids) <= set(calls(url, prefix)), timeout, "every event")
    time.sleep(0.5)  # let any late duplicate land before counting
    return calls(url, prefix)


def server(make_redis_server: MakeRedisServer) -> RedisServer:
    made = make_redis_server(appendonly=True)
    assert isinstance(made, RedisServer)
    return made


def test_consumer_sigkilled_twice(make_redis_server: MakeRedisServer, key_prefix: str,
                                  consumers: Callable[..., Consumer]) -> None:
    redis_server = server(make_redis_server)
    url, ids = redis_server.url, [f"e{n}" for n in range(3000)]
    current = [consumers(url, key_prefix).wait_ready()]
    recovery = Recovery()

    def kill_at(count: int) -> None:
        if count in (1000, 2000):
            wait_until(lambda: len(calls(url, key_prefix)) >= count - 500, 30, "progress")
            current[0].kill()
            killed = time.monotonic()
            current[0] = consumers(url, key_prefix).wait_ready()
            recovery.measure(url, key_prefix, ids[:count], killed)

    publish(url, key_prefix, ids, kill_at)
    row = record("consumer SIGKILL x2 (3,000 events; min idle 1 s)", ids,
                 delivered(url, key_prefix, ids), AT_LEAST_ONCE, recovery.seconds)
    assert (row.lost, row.unexpected) == (0, 0)


def test_consumer_sigkilled_twice_with_the_default_settings(
    make_redis_server: MakeRedisServer, key_prefix: str, consumers: Callable[..., Consumer]
) -> None:
    """The outside scenario, with the defaults a user gets (min idle 30 s, a claim walk
    every 5 s, concurrency 4, prefetch 200): 3,000 events stored first, the consumer
    SIGKILLed once it handled 300, its successor once 300 more were handled, then a
    survivor. Every event is handled within ``consumer_min_idle_s`` + 10 s of the second
    kill (each dead consumer held up to 200 entries)."""
    redis_server = server(make_redis_server)
    url, ids = redis_server.url, [f"e{n}" for n in range(3000)]
    defaults = ("--concurrency", str(DEFAULT_CONCURRENCY),
                "--min-idle", str(DEFAULT_CONSUMER_MIN_IDLE_S),
                "--claim", str(DEFAULT_CONSUMER_CLAIM_INTERVAL_S),
                "--block", str(DEFAULT_CONSUMER_BLOCK_MS))
    publish(url, key_prefix, ids)
    killed = 0.0
    for handled in (300, 600):
        victim = consumers(url, key_prefix, *defaults).wait_ready()
        wait_until(lambda n=handled: len(set(calls(url, key_prefix))) >= n, 60, "progress")
        victim.kill()
        killed = time.monotonic()
    consumers(url, key_prefix, *defaults).wait_ready()
    recovery = Recovery()
    recovery.measure(url, key_prefix, ids, killed)
    row = record("consumer SIGKILL x2, default settings (3,000 events)", ids,
                 delivered(url, key_prefix, ids), AT_LEAST_ONCE, recovery.seconds)
    assert (row.lost, row.unexpected) == (0, 0)
    assert recovery.seconds is not None
    assert recovery.seconds <= DEFAULT_CONSUMER_MIN_IDLE_S + 10, (
        f"recovered in {recovery.seconds:.1f} s")


def test_redis_sigkilled_with_aof_always(make_redis_server: MakeRedisServer, key_prefix: str,
                                         consumers: Callable[..., Consumer]) -> None:
    redis_server = server(make_redis_server)
    url, ids = redis_server.url, [f"e{n}" for n in range(2000)]
    consumers(url, key_prefix).wait_ready()

    recovery = Recovery()

    def crash_at(count: int) -> None:
        if count == 1000:
            crashed = time.monotonic()
            redis_server.kill()
            redis_server.start()
            recovery.measure(url, key_prefix, ids[:count], crashed)

    publish(url, key_prefix, ids, crash_at)
    row = record("Redis SIGKILL, AOF always (2,000 events)", ids,
                 delivered(url, key_prefix, ids), AT_LEAST_ONCE + " of confirmed",
                 recovery.seconds)
    assert (row.lost, row.unexpected) == (0, 0)


def test_redis_down_for_ten_seconds(make_redis_server: MakeRedisServer, key_prefix: str,
                                    consumers: Callable[..., Consumer]) -> None:
    redis_server = server(make_redis_server)
    url, ids = redis_server.url, [f"e{n}" for n in range(1000)]
    consumers(url, key_prefix).wait_ready()

    recovery = Recovery()

    def outage_at(count: int) -> None:
        if count == 500:
            redis_server.stop()
            time.sleep(10)
            restarted = time.monotonic()
            redis_server.start()
            recovery.measure(url, key_prefix, ids[:count], restarted)

    publish(url, key_prefix, ids, outage_at)
    row = record("Redis down 10 s (1,000 events; recovered: from its restart)", ids,
                 delivered(url, key_prefix, ids), AT_LEAST_ONCE, recovery.seconds)
    assert (row.lost, row.unexpected) == (0, 0)


def test_client_pause(make_redis_server: MakeRedisServer, key_prefix: str,
                      consumers: Callable[..., Consumer]) -> None:
    redis_server = server(make_redis_server)
    url, ids = redis_server.url, [f"e{n}" for n in range(1000)]
    consumers(url, key_prefix).wait_ready()

    recovery = Recovery()

    def pause_at(count: int) -> None:
        if count == 500:
            client = redis.Redis.from_url(url)
            paused = time.monotonic()
            try:
                client.execute_command("CLIENT", "PAUSE", 3000, "ALL")
            finally:
                client.close()
            recovery.measure(url, key_prefix, ids[:count], paused)

    publish(url, key_prefix, ids, pause_at)
    row = record("CLIENT PAUSE 3 s (1,000 events)", ids, delivered(url, key_prefix, ids),
                 AT_LEAST_ONCE, recovery.seconds)
    assert (row.lost, row.unexpected) == (0, 0)


def test_flushall_between_two_batches(make_redis_server: MakeRedisServer, key_prefix: str,
                                      consumers: Callable[..., Consumer],
                                      tmp_path: Path) -> None:
    redis_server = server(make_redis_server)
    url = redis_server.url
    first, second = [f"a{n}" for n in range(500)], [f"b{n}" for n in range(500)]
    consumers(url, key_prefix).wait_ready()
    publish(url, key_prefix, first)
    seen_first = delivered(url, key_prefix, first)
    client = redis.Redis.from_url(url)
    try:
        client.flushall()  # the calls list goes too: keep what the first batch recorded
    finally:
        client.close()
    flushed = time.monotonic()
    publish(url, key_prefix, second)
    seen_second = delivered(url, key_prefix, second)
    recovery = Recovery()
    recovery.measure(url, key_prefix, second, flushed)
    row = record("FLUSHALL between two batches (1,000 events; recovered: the second batch "
                 "handled)", first + second, seen_first + seen_second,
                 "group recreated; lost 0 of what Redis still held", recovery.seconds)
    assert (row.lost, row.unexpected) == (0, 0)


def test_startup_with_redis_down(make_redis_server: MakeRedisServer, key_prefix: str,
                                 consumers: Callable[..., Consumer]) -> None:
    redis_server = server(make_redis_server)
    url, ids = redis_server.url, [f"e{n}" for n in range(500)]
    redis_server.stop()
    consumer = consumers(url, key_prefix)
    time.sleep(5)
    assert consumer.proc.poll() is None, "the consumer exited while Redis was down"
    started = time.monotonic()
    redis_server.start()
    consumer.wait_ready()
    ready_after = time.monotonic() - started
    publish(url, key_prefix, ids)
    row = record("consumer started with Redis down 5 s (500 events; recovered: Redis up to "
                 "consumer reading)", ids, delivered(url, key_prefix, ids), AT_LEAST_ONCE,
                 ready_after)
    assert (row.lost, row.unexpected) == (0, 0)


def test_sink_worker_sigkilled_mid_call(redis_url: str, key_prefix: str, tmp_path: Path,
                                        target: Target) -> None:
    sink = {"name": "hook", "url": target.url("/hook"), "patterns": [TYPE], "attempts": 5,
            "backoff_base_s": 0.2, "backoff_max_s": 1.0, "timeout_s": 5.0,
            "circuit_failures": 0}  # this case is about crash recovery, not the breaker
    config = write_config(tmp_path / "bus.toml", url=redis_url, prefix=key_prefix,
                          sinks=[sink])
    target.script("/hook", [Reply(200, hang=True, hang_s=10)] * 3)  # three calls in flight
    first = WorkerProcess(config, tmp_path / "w1.log", options={"processes": 1}).start()
    second = WorkerProcess(config, tmp_path / "w2.log", options={"processes": 1}).start()
    try:
        ids = [f"s{n}" for n in range(30)]
        settings = settings_for(redis_url, key_prefix, config)

        async def go() -> None:
            async with Bus(config=settings) as bus:
                for event_id in ids:
                    await bus.publish(TYPE, {"id": event_id}, id=event_id, durable=True,
                                      fanout=False)

        asyncio.run(go())
        target.wait_for(lambda: len(target.received("/hook")) >= 1, 20, "a call in flight")
        killed = time.monotonic()
        os.killpg(first.pid, signal.SIGKILL)  # the whole service, mid-call
        target.release()
        target.wait_for(lambda: set(ids) <= {r.headers["idempotency-key"]
                                              for r in target.received("/hook")}, 60,
                        "every event at the sink")
        recovered = time.monotonic() - killed
        time.sleep(0.5)
        keys = [r.headers["idempotency-key"] for r in target.received("/hook")]
        row = record("sink worker service SIGKILL mid-call (30 events)", ids, keys,
                     AT_LEAST_ONCE + ", same Idempotency-Key", recovered)
        assert (row.lost, row.unexpected) == (0, 0)
    finally:
        first.stop()
        second.stop()
