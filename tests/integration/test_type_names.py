"""CloudEvents-style type names on a real redis-server: ``mozaiks-bus publish`` (a child
process, as a user runs it) and the library store ``com.example.order-created`` and
``Order.Created`` in streams of their own, durable consumers (exact, pattern and
partitioned, and on a Redis Cluster) and an HTTP sink on CloudEvents-style patterns
read them back, case-sensitively, and a hostile name is refused before Redis sees it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from mozaiks_bus import Event
from mozaiks_bus.event import TYPE_PATTERN
from mozaiks_bus.keys import Keys
from tests.integration.sink_support import WorkerProcess, publish, settings_for, write_config
from tests.integration.sink_target import Target
from tests.support import clean_env, make_bus, wait_for

pytestmark = pytest.mark.integration


def cli(url: str, prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = clean_env({"MOZAIKS_BROKER_URL": url, "MOZAIKS_BUS_PREFIX": prefix})
    return subprocess.run([sys.executable, "-m", "mozaiks_bus.cli", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_the_cli_publishes_cloudevents_types_and_consumers_read_them(
    redis_url: str, key_prefix: str
) -> None:
    ids = {}
    for name in ("com.example.order-created", "Order.Created"):
        done = cli(redis_url, key_prefix, "publish", name, '{"n": 1}', "--durable")
        assert done.returncode == 0, done.stderr
        ids[name] = done.stdout.strip()
    client = redis.Redis.from_url(redis_url)
    try:
        keys = Keys(key_prefix)
        assert client.xlen(keys.stream("com.example.order-created")) == 1
        assert client.xlen(keys.stream("Order.Created")) == 1
        assert not client.exists(keys.stream("order.created"))  # case kept, never folded
        assert client.smembers(keys.stream_index()) == {b"com.example.order-created",
                                                        b"Order.Created"}
    finally:
        client.close()

    async def consume() -> dict[str, list[str]]:
        seen: dict[str, list[str]] = {"pattern": [], "exact": []}
        bus = make_bus(redis_url, key_prefix)

        @bus.consumer("com.example.*", group="orders")
        async def by_pattern(event: Event) -> None:
            seen["pattern"].append(event.id)

        @bus.consumer("Order.Created", group="orders")
        async def exact(event: Event) -> None:
            seen["exact"].append(event.id)

        async with bus:
            await wait_for(lambda: seen["pattern"] and seen["exact"], 20, "both events")
        return seen

    seen = asyncio.run(consume())
    assert seen == {"pattern": [ids["com.example.order-created"]],
                    "exact": [ids["Order.Created"]]}


@pytest.mark.parametrize("name", ["x{y}", "x:y", "a b", "x*"])
def test_the_cli_refuses_a_hostile_type_naming_the_rule(
    redis_url: str, key_prefix: str, name: str
) -> None:
    done = cli(redis_url, key_prefix, "publish", name, "{}", "--durable")
    assert done.returncode != 0
    assert "type" in done.stderr + done.stdout
    assert TYPE_PATTERN in done.stderr + done.stdout
    client = redis.Redis.from_url(redis_url)
    try:
        # refused before Redis saw it: no stream, no index entry
        assert not [key for key in client.keys(f"{key_prefix}:*")
                    if b":stream:" in key or b":streams" in key]
    finally:
        client.close()


async def test_a_partitioned_capitalised_type_round_trips(redis_url: str, key_prefix: str) -> None:
    partitions = {"stream_partitions": {"Order.Created": 2}}
    seen: list[tuple[str, str]] = []
    consumer = make_bus(redis_url, key_prefix, **partitions)

    @consumer.consumer("Order.*", group="billing")
    async def bill(event: Event) -> None:
        seen.append((event.type, event.subject or ""))

    async with make_bus(redis_url, key_prefix, **partitions) as publisher:
        for subject in ("a", "b", "c", "d"):
            await publisher.publish("Order.Created", {}, subject=subject, durable=True)
    keys = Keys(key_prefix)
    client = redis.Redis.from_url(redis_url)
    try:
        entries = [entry for n in range(2)
                   for entry in client.xrange(keys.stream(f"Order.Created:p{n}"))]
        assert len(entries) == 4
        assert {json.loads(fields[b"e"])["type"] for _, fields in entries} == {"Order.Created"}
    finally:
        client.close()
    async with consumer:
        await wait_for(lambda: len(seen) == 4, 20, "four events")
    assert sorted(seen) == [("Order.Created", s) for s in ("a", "b", "c", "d")]


async def test_cloudevents_types_round_trip_on_a_redis_cluster(
    cluster_url: str, key_prefix: str
) -> None:
    """On a cluster each type's stream, dead letters and processed ids share its own
    hash tag; a capitalised, hyphenated type is routed to its slot like any other."""
    names = ("com.example.order-created", "Order.Created")
    seen: list[str] = []
    bus = make_bus(cluster_url, key_prefix)

    @bus.consumer("com.example.*", group="orders")
    async def by_pattern(event: Event) -> None:
        seen.append(event.type)

    @bus.consumer("Order.*", group="orders")
    async def by_capital(event: Event) -> None:
        seen.append(event.type)

    async with bus:
        for name in names:
            await bus.publish(name, {"n": 1}, durable=True, fanout=False)
        await wait_for(lambda: len(seen) == 2, 20, "both events")
    assert sorted(seen) == sorted(names)


def test_a_sink_on_cloudevents_patterns_receives_those_types_only(
    redis_url: str, key_prefix: str, tmp_path: Path, target: Target,
    workers: list[WorkerProcess],
) -> None:
    sink = {"name": "orders", "url": target.url("/hook"), "timeout_s": 5.0,
            "patterns": ["com.example.order-*", "Order.*"]}
    config = write_config(tmp_path / "bus.toml", url=redis_url, prefix=key_prefix, sinks=[sink])
    worker = WorkerProcess(config, tmp_path / "worker.log", cli=True).start()
    workers.append(worker)
    settings = settings_for(redis_url, key_prefix, config)
    for name in ("order.created", "com.example.order-created", "Order.Created"):
        publish(settings, name, [{"n": 1}])
    target.wait_for(lambda: len(target.received("/hook")) >= 2, 30, "two deliveries")
    delivered = sorted(json.loads(call.body)["type"] for call in target.received("/hook"))
    assert delivered == ["Order.Created", "com.example.order-created"]
    client = redis.Redis.from_url(redis_url)
    try:  # the sink never read order.created: it has no group on that stream
        keys = Keys(key_prefix)
        groups = {g["name"] for g in client.xinfo_groups(keys.stream("order.created"))}
        assert Keys.sink_group("orders").encode() not in groups
        groups = {g["name"] for g in client.xinfo_groups(keys.stream("Order.Created"))}
        assert Keys.sink_group("orders").encode() in groups
    finally:
        client.close()
