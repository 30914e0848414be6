"""Declared interest end to end: a consumer group or a sink that started gets every
event of its types from every publisher on the broker, with no route configured.

Real redis-server (the session's, isolated by prefix), real consumer, publisher, API,
CLI and sink worker processes; every wait is bounded. ``order.created`` matches no
routing rule but ``*`` (local + fan-out): without declared interest none of these
events would be stored.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from mozaiks_bus import Bus, ConfigError, Event, load_settings
from mozaiks_bus.interest import declarations
from tests.integration.durable_proc import calls_key
from tests.integration.server_harness import ALL, ServeProcess, auth
from tests.integration.sink_support import WorkerProcess, write_config
from tests.integration.sink_target import Target
from tests.support import clean_env, wait_until

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
TYPE = "order.created"
PUBLISHER = """
import asyncio, json, sys
from mozaiks_bus import Bus, load_settings

async def main(url, prefix, count):
    async with Bus(config=load_settings(broker_url=url, prefix=prefix, env={})) as bus:
        ids = []
        for start in range(0, count, 100):
            events = await asyncio.gather(*(bus.publish("order.created", {"n": n})
                                            for n in range(start, min(start + 100, count))))
            ids += [event.id for event in events]
    print(json.dumps(ids))

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


class Consumer:
    """``tests.integration.durable_proc`` consuming TYPE in group ``shipping``."""

    def __init__(self, url: str, prefix: str) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.durable_proc", url, prefix, TYPE,
             "--mode", "list", "--group", "shipping"],
            cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=clean_env())
        self.out: list[str] = []
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.out.append(line.rstrip("\n"))

    def wait_ready(self, timeout: float = 30) -> Consumer:
        wait_until(lambda: "ready" in self.out or self.popen.poll() is not None, timeout,
                   "the consumer's ready line")
        assert "ready" in self.out, "\n".join(self.out[-20:])
        return self

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        self._thread.join(5)
        if self.popen.stdout is not None:
            self.popen.stdout.close()


@pytest.fixture
def consumer(redis_url: str, key_prefix: str) -> Iterator[Consumer]:
    started = Consumer(redis_url, key_prefix)
    try:
        yield started.wait_ready()
    finally:
        started.close()


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    made = redis.Redis.from_url(redis_url)
    yield made
    made.close()


def handled(client: redis.Redis, prefix: str) -> list[str]:
    return [raw.decode() for raw in client.lrange(calls_key(prefix, TYPE), 0, -1)]


def wait_handled(client: redis.Redis, prefix: str, ids: list[str], timeout: float = 60) -> None:
    wanted = set(ids)
    wait_until(lambda: wanted <= set(handled(client, prefix)), timeout,
               f"{len(wanted)} events handled")
    calls = handled(client, prefix)
    duplicates = len(calls) - len(set(calls))
    print(f"declared interest: {len(wanted)} published, {len(set(calls))} handled, "
          f"{duplicates} duplicates")
    assert set(calls) == wanted  # nothing else, nothing missing


def test_a_separate_publisher_with_no_routes_reaches_a_consumer_started_first(
    consumer: Consumer, client: redis.Redis, redis_url: str, key_prefix: str
) -> None:
    published = subprocess.run(
        [sys.executable, "-c", PUBLISHER, redis_url, key_prefix, "1000"], cwd=ROOT,
        env=clean_env(), capture_output=True, text=True, timeout=120, check=True)
    ids = json.loads(published.stdout)
    assert len(set(ids)) == 1000
    wait_handled(client, key_prefix, ids)


def test_http_and_the_cli_reach_a_consumer_started_first(
    consumer: Consumer, client: redis.Redis, redis_url: str, key_prefix: str
) -> None:
    server = ServeProcess(redis_url, key_prefix).start().wait_ready()
    try:
        ids: list[str] = []
        for batch in range(10):
            body = [{"specversion": "1.0", "id": f"http-{batch}-{n}", "type": TYPE,
                     "source": "test", "data": {"n": n}} for n in range(100)]
            reply = httpx.post(server.url + "/v1/events", json=body, headers=auth(ALL),
                               timeout=30)
            assert reply.status_code == 202, reply.text
            ids += [item["id"] for item in body]
    finally:
        server.stop()
    env = clean_env({"MOZAIKS_BROKER_URL": redis_url, "MOZAIKS_BUS_PREFIX": key_prefix})
    for n in range(5):
        done = subprocess.run(
            [sys.executable, "-m", "mozaiks_bus.cli", "publish", TYPE, json.dumps({"n": n})],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        ids.append(done.stdout.strip())  # the CLI prints the event id
    wait_handled(client, key_prefix, ids)


async def test_a_publisher_running_before_the_consumer_stores_from_its_start_on(
    redis_url: str, key_prefix: str
) -> None:
    """The case the version probe exists for: the publisher read the interest long
    before the consumer declared it."""
    settings = load_settings(broker_url=redis_url, prefix=key_prefix, env={})
    got: list[str] = []
    async with Bus(config=settings) as publisher:
        before = await publisher.publish(TYPE, {"n": -1})  # nobody declared: not stored
        consumer_bus = Bus(config=load_settings(broker_url=redis_url, prefix=key_prefix,
                                                consumer_claim_interval_s=0.2, env={}))

        @consumer_bus.consumer(TYPE, group="shipping")
        async def handle(event: Event) -> None:
            got.append(event.id)

        async with consumer_bus:
            published = [await publisher.publish(TYPE, {"n": n}) for n in range(100)]
            emitted = [publisher.emit(TYPE, {"n": n}) for n in range(100)]
            assert await publisher.flush(10)
            ids = {event.id for event in published + emitted}
            deadline = time.monotonic() + 30
            while not ids <= set(got) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            found = await declarations(consumer_bus.transport.client, settings.keys)
        assert ids <= set(got), f"{len(ids - set(got))} of {len(ids)} never handled"
        assert before.id not in got  # published before any declaration: fan-out only
        assert [(d.pattern, d.group) for d in found] == [(TYPE, "shipping")]


def test_a_sink_on_a_pattern_receives_what_a_plain_publisher_sends(
    tmp_path: Path, redis_url: str, key_prefix: str, target: Target,
    workers: list[WorkerProcess]
) -> None:
    config = write_config(tmp_path / "bus.toml", url=redis_url, prefix=key_prefix, sinks=[
        {"name": "orders", "url": target.url("/hook"), "patterns": ["order.*"]}])
    worker = WorkerProcess(config, tmp_path / "worker.log").start()
    workers.append(worker)

    async def go() -> list[str]:
        bus = Bus(config=load_settings(broker_url=redis_url, prefix=key_prefix, env={}))
        async with bus:
            return [(await bus.publish(TYPE, {"n": n})).id for n in range(50)]

    ids = asyncio.run(go())
    target.wait_for(lambda: {r.headers.get("idempotency-key") for r in target.received("/hook")}
                    >= set(ids), 60, "50 deliveries to the sink")


async def test_a_consumer_of_a_type_kept_local_is_refused_naming_the_rule(
    redis_url: str, key_prefix: str
) -> None:
    bus = Bus(config=load_settings(broker_url=redis_url, prefix=key_prefix, env={}))

    with pytest.raises(ConfigError, match="'api_error'"):
        bus.consumer("api_error", group="audit")(lambda event: None)
    with pytest.raises(ConfigError, match="live objects"):
        bus.consumer("chat.structured_output_ready", group="audit")(lambda event: None)
    await bus.stop()
