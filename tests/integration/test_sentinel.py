"""redis+sentinel:// against a real local Sentinel: the bus works through it, and it
follows a failover (replica promoted after the primary is SIGKILLed)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from mozaiks_bus import Bus, Event, load_settings
from tests.conftest import MakeRedisServer
from tests.redis_server import free_port, redis_server_binary
from tests.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow,
              pytest.mark.skipif(redis_server_binary() is None,
                                 reason="needs redis-server on PATH")]
MASTER = "mozaiks"



@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(master_port: int) -> int:
        port = free_port()
        conf = tmp_path / f"sentinel-{port}.conf"
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {master_port} 1\n"
            f"sentinel down-after-milliseconds {MASTER} 1000\n"
            f"sentinel failover-timeout {MASTER} 4000\n"
        )
        procs.append(subprocess.Popen(
            [str(redis_server_binary()), str(conf), "--sentinel"], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL))
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                if client.sentinel_master(MASTER):
                    break
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("the sentinel did not start")
            time.sleep(0.05)
        client.close()
        return port

    yield start
    for proc in procs:
        proc.kill()
        proc.wait(10)


def sentinel_bus(sentinel_port: int, prefix: str) -> Bus:
    return Bus(config=load_settings(
        broker_url=f"redis+sentinel://127.0.0.1:{sentinel_port}/{MASTER}", prefix=prefix,
        health_check_interval_s=0.5, consumer_block_ms=100, consumer_claim_interval_s=0.2,
        publish_timeout_s=2.0))



async def test_every_scope_works_through_sentinel(
    make_redis_server: MakeRedisServer, sentinel: Any, key_prefix: str
) -> None:
    primary = make_redis_server(appendonly=True)
    port = sentinel(primary.port)
    sender, receiver = sentinel_bus(port, key_prefix), sentinel_bus(port, key_prefix)
    fanned: list[str] = []
    consumed: list[str] = []
    receiver.subscribe("settings_updated", lambda e: fanned.append(e.id))

    @receiver.consumer("orders.created", group="shop")
    async def handle(event: Event) -> None:
        consumed.append(event.id)

    async with sender, receiver:
        await wait_for(lambda: receiver.health()["listener"] == "receiving", 10, "listener")
        fan = await sender.publish("settings_updated", {"user_id": "u", "plugin": "p"})
        durable = await sender.publish("orders.created", {"n": 1}, durable=True)
        await wait_for(lambda: fanned == [fan.id] and consumed == [durable.id], 10,
                       "fan-out and durable delivery")


async def test_the_bus_follows_a_failover(
    make_redis_server: MakeRedisServer, sentinel: Any, key_prefix: str
) -> None:
    primary = make_redis_server(appendonly=True)
    replica = make_redis_server(
        appendonly=True, extra_args=("--replicaof", "127.0.0.1", str(primary.port)))
    admin = redis.Redis(port=replica.port)
    deadline = time.monotonic() + 10
    while admin.info("replication").get("master_link_status") != "up":
        assert time.monotonic() < deadline, "the replica did not sync"
        await asyncio.sleep(0.05)
    port = sentinel(primary.port)
    bus = sentinel_bus(port, key_prefix)
    consumed: list[int] = []

    @bus.consumer("orders.created", group="shop")
    async def handle(event: Event) -> None:
        consumed.append(event.data["n"])

    async with bus:
        await bus.publish("orders.created", {"n": 1}, durable=True)
        await wait_for(lambda: consumed == [1], 10, "the first event")
        primary.kill()  # SIGKILL: the sentinel promotes the replica
        stored = 0
        deadline = time.monotonic() + 30
        while stored == 0 and time.monotonic() < deadline:
            try:
                await bus.publish("orders.created", {"n": 2}, durable=True)
                stored = 2
            except Exception:  # BrokerUnavailable / PublishFailed while failing over
                await asyncio.sleep(0.5)
        assert stored == 2, "publishing never resumed after the failover"
        assert admin.info("replication")["role"] == "master"
        await wait_for(lambda: 2 in consumed, 20, "consumption on the new primary")
    admin.close()
