"""Confirmed means replicated, when asked: ``publish(..., min_replicas=N)`` and the
``durable_min_replicas`` setting (WAIT after the write, in the same pipeline).

Real primaries, replicas and a Sentinel on loopback; every wait bounded. The failover
case is the one asynchronous replication loses writes in: with ``min_replicas=1`` no
confirmed event may be missing after the primary is SIGKILLed under load.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest
import redis

from mozaiks_bus import BrokerUnavailable, Bus, ConfigError, Event, PublishFailed, load_settings
from mozaiks_bus.keys import Keys
from tests.conftest import MakeRedisServer
from tests.integration.test_sentinel import MASTER, sentinel  # noqa: F401  # the fixture
from tests.redis_server import RedisServer
from tests.support import wait_for

pytestmark = [pytest.mark.integration]
TYPE = "orders.created"


async def _synced(replica: RedisServer, timeout: float = 10) -> None:
    client = redis.Redis(port=replica.port)
    try:
        deadline = time.monotonic() + timeout
        while client.info("replication").get("master_link_status") != "up":
            assert time.monotonic() < deadline, "the replica did not sync"
            await asyncio.sleep(0.05)
    finally:
        client.close()


def _replica_of(make: MakeRedisServer, primary: RedisServer) -> RedisServer:
    return make(appendonly=True, extra_args=("--replicaof", "127.0.0.1", str(primary.port)))


async def test_a_publish_waits_for_its_replicas_and_fails_naming_what_it_reached(
    make_redis_server: MakeRedisServer, key_prefix: str
) -> None:
    primary = make_redis_server(appendonly=True)
    replica = _replica_of(make_redis_server, primary)
    await _synced(replica)
    stream = Keys(key_prefix).stream(TYPE)
    on_replica = redis.Redis(port=replica.port)
    bus = Bus(config=load_settings(broker_url=primary.url, prefix=key_prefix,
                                   publish_timeout_s=2.0, env={}))
    async with bus:
        await bus.publish(TYPE, {"n": 1}, durable=True, min_replicas=1)
        assert on_replica.xlen(stream) == 1  # WAIT returned: the replica has it
        with pytest.raises(ConfigError, match="min_replicas"):
            await bus.publish(TYPE, {"n": 0}, durable=True, min_replicas=-1)
        replica.kill()
        with pytest.raises(PublishFailed, match="0 of the 1 replicas"):
            await bus.publish(TYPE, {"n": 2}, durable=True, min_replicas=1)
        await bus.publish(TYPE, {"n": 3}, durable=True)  # nobody asked: confirmed at once
    on_replica.close()

    strict = Bus(config=load_settings(broker_url=primary.url, prefix=key_prefix,
                                      publish_timeout_s=1.0, durable_min_replicas=1, env={}))
    async with strict:  # the setting is the default of every confirmed publish
        with pytest.raises(PublishFailed, match="replicas"):
            await strict.publish(TYPE, {"n": 4}, durable=True)
        with pytest.raises(PublishFailed, match="replicas"):
            await strict.publish_events([Event.create(TYPE, {"n": 5}, source="t")])


class Load:
    """Confirmed publishes in a loop; a failed one is retried with the same id."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.acked: list[str] = []
        self.failures = 0
        self.stop = asyncio.Event()

    async def run(self, count: int) -> None:
        for n in range(count):
            while not self.stop.is_set():
                try:
                    await self.bus.publish(TYPE, {"n": n}, id=f"load-{n}", durable=True,
                                           fanout=False)
                except (PublishFailed, BrokerUnavailable):
                    self.failures += 1
                    await asyncio.sleep(0.05)
                    continue
                self.acked.append(f"load-{n}")
                break
            await asyncio.sleep(0.002)


@pytest.mark.slow
async def test_with_one_replica_required_a_sentinel_failover_loses_no_confirmed_event(
    make_redis_server: MakeRedisServer, sentinel: Any, key_prefix: str  # noqa: F811
) -> None:
    primary = make_redis_server(appendonly=True)
    replicas = [_replica_of(make_redis_server, primary) for _ in range(2)]
    for replica in replicas:
        await _synced(replica)
    port = sentinel(primary.port)
    bus = Bus(config=load_settings(
        broker_url=f"redis+sentinel://127.0.0.1:{port}/{MASTER}", prefix=key_prefix,
        publish_timeout_s=2.0, durable_min_replicas=1, health_check_interval_s=0.5, env={}))
    load = Load(bus)
    async with bus:
        task = asyncio.create_task(load.run(2000))
        await wait_for(lambda: len(load.acked) >= 400, 30, "load before the kill")
        killed_after = len(load.acked)
        primary.kill()
        try:
            await asyncio.wait_for(task, 120)
        finally:
            load.stop.set()
    stored: set[str] = set()
    for replica in replicas:  # one of them is the new primary; both hold the stream
        client = redis.Redis(port=replica.port)
        with contextlib.suppress(redis.RedisError):
            if client.info("replication")["role"] == "master":
                stored = {Event.from_json(fields[b"e"]).id
                          for _, fields in client.xrange(Keys(key_prefix).stream(TYPE))}
        client.close()
    lost = sorted(set(load.acked) - stored, key=lambda i: int(i.split("-")[1]))
    print(f"\nsentinel failover, min_replicas=1: {len(load.acked)} confirmed, killed after "
          f"{killed_after}, {load.failures} publishes raised (and were retried), lost "
          f"{len(lost)} {lost[:10]}")
    assert len(load.acked) == 2000
    assert lost == []
