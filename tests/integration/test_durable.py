"""Durable delivery: functional behaviour against a real redis-server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
import redis.asyncio as aioredis

from mozaiks_bus import Event
from mozaiks_bus.durable.consumer import Delivery
from mozaiks_bus.durable.retention import RetentionKeeper
from mozaiks_bus.keys import Keys
from tests.support import make_bus, wait_for

pytestmark = pytest.mark.integration




def notification(n: int) -> dict[str, Any]:
    return {"notification_id": f"n{n}", "user_id": "u1", "notification_type": "info",
            "subject": "Hello", "message": f"message {n}"}


async def test_durable_types_are_stored_and_indexed(redis_url: str, key_prefix: str) -> None:
    keys = Keys(key_prefix)
    async with make_bus(redis_url, key_prefix) as bus:
        confirmed = await bus.publish("notification.created", notification(1))
        bus.emit("notification.created", notification(2))
        await bus.publish("orders.created", {"order": 7}, durable=True)
        await bus.publish("settings_updated", {"user_id": "u", "plugin": "p"})  # fan-out only
    client = aioredis.Redis.from_url(redis_url)
    try:
        rows = await client.xrange(keys.stream("notification.created"))
        assert len(rows) == 2
        assert Event.from_json(rows[0][1][b"e"]) == confirmed
        assert await client.smembers(keys.stream_index()) == {
            b"notification.created", b"orders.created"}
        assert not await client.exists(keys.stream("settings_updated"))
    finally:
        await client.aclose()


async def test_every_group_gets_every_event_and_a_group_shares_its_work(
    redis_url: str, key_prefix: str
) -> None:
    seen: dict[str, list[str]] = {"email-a": [], "email-b": [], "audit": []}
    buses = [make_bus(redis_url, key_prefix) for _ in range(3)]
    for bus, (name, group) in zip(buses, [("email-a", "email"), ("email-b", "email"),
                                          ("audit", "audit")], strict=True):

        @bus.consumer("notification.created", group=group)
        async def handle(event: Event, _name: str = name) -> None:
            seen[_name].append(event.data["notification_id"])

    publisher = make_bus(redis_url, key_prefix)
    async with publisher, buses[0], buses[1], buses[2]:
        for n in range(60):
            await publisher.publish("notification.created", notification(n))
        await wait_for(lambda: len(seen["audit"]) == 60
                       and len(seen["email-a"]) + len(seen["email-b"]) == 60, 10, "delivery")
    expected = {f"n{n}" for n in range(60)}
    assert set(seen["audit"]) == expected
    assert set(seen["email-a"]) | set(seen["email-b"]) == expected
    assert not set(seen["email-a"]) & set(seen["email-b"])


async def test_glob_consumers_discover_streams_created_later(
    redis_url: str, key_prefix: str
) -> None:
    got: list[str] = []
    consumer = make_bus(redis_url, key_prefix)

    @consumer.consumer("plugin.execution.*", group="audit")
    def record(event: Event) -> None:  # sync handlers run in a worker thread
        got.append(event.type)

    publisher = make_bus(redis_url, key_prefix)
    async with consumer, publisher:
        await publisher.publish("plugin.execution.complete", {
            "app_id": "a", "plugin": "p", "user_id": "u", "execution_time": 0.1,
            "status": "ok"})
        await publisher.publish("plugin.execution.started", {"plugin": "p"})
        await wait_for(lambda: len(got) == 2, 5, "both streams")
    assert sorted(got) == ["plugin.execution.complete", "plugin.execution.started"]


async def test_delivery_tx_commits_with_the_ack_and_the_guard_skips_redelivery(
    redis_url: str, key_prefix: str
) -> None:
    keys = Keys(key_prefix)
    effects = f"{key_prefix}:effects:{{orders.created}}"
    calls: list[str] = []
    bus = make_bus(redis_url, key_prefix)

    @bus.consumer("orders.created", group="billing", guard=True)
    async def bill(event: Event, delivery: Delivery) -> None:
        calls.append(event.id)
        delivery.tx.hincrby(effects, event.id, 1)

    async with bus:
        first = await bus.publish("orders.created", {"n": 1}, durable=True)
        await wait_for(lambda: bus.stats.get("consumed") == 1, 5, "the first delivery")
        # Re-run the group from the start: the guard must suppress the second effect.
        await bus.streams.replay_group("orders.created", "billing", from_id="0")
        await wait_for(lambda: bus.stats.get("duplicates") == 1, 5, "the duplicate")
        info = await bus.streams.stream("orders.created")
    client = aioredis.Redis.from_url(redis_url)
    try:
        assert await client.hgetall(effects) == {first.id.encode(): b"1"}
        assert await client.zscore(keys.processed_ids("billing", "orders.created"), first.id)
    finally:
        await client.aclose()
    assert calls == [first.id]
    assert info.groups[0].pending == 0


async def test_replay_a_group_from_a_time_redelivers_what_came_after(
    redis_url: str, key_prefix: str
) -> None:
    got: list[int] = []
    bus = make_bus(redis_url, key_prefix)

    @bus.consumer("orders.created", group="reports")
    async def report(event: Event) -> None:
        got.append(event.data["n"])

    async with bus:
        for n in range(3):
            await bus.publish("orders.created", {"n": n}, durable=True)
        await asyncio.sleep(0.01)
        middle = datetime.now(UTC)
        await asyncio.sleep(0.01)
        for n in range(3, 6):
            await bus.publish("orders.created", {"n": n}, durable=True)
        await wait_for(lambda: len(got) == 6, 5, "first pass")
        await bus.streams.replay_group("orders.created", "reports", from_time=middle)
        await wait_for(lambda: len(got) == 9, 5, "the replay")
    assert got == [0, 1, 2, 3, 4, 5, 3, 4, 5]


async def test_inspection_reports_lag_pending_and_oldest_pending_age(
    redis_url: str, key_prefix: str
) -> None:
    release = asyncio.Event()
    bus = make_bus(redis_url, key_prefix)

    @bus.consumer("orders.created", group="slow", concurrency=2, prefetch=2)
    async def slow(event: Event) -> None:
        await release.wait()

    async with bus:
        for n in range(5):
            await bus.publish("orders.created", {"n": n}, durable=True)
        await wait_for(lambda: True, 0, "")
        await asyncio.sleep(0.5)
        info = await bus.streams.stream("orders.created")
        group = info.groups[0]
        assert info.length == 5
        assert group.name == "slow"
        assert group.pending == 2  # prefetch 2: two held, three not yet read
        assert group.lag == 3
        assert group.oldest_pending_age_s is not None
        assert group.oldest_pending_age_s >= 0.4
        release.set()
        await wait_for(lambda: bus.stats.get("consumed") == 5, 5, "the rest")
        streams = await bus.streams.streams()
    assert [s.type for s in streams] == ["orders.created"]
    assert streams[0].groups[0].pending == 0


async def test_soft_retention_trims_only_what_every_group_acked(
    redis_url: str, key_prefix: str
) -> None:
    keys = Keys(key_prefix)
    bus = make_bus(redis_url, key_prefix, stream_max_len=10, retention_interval_s=3600)
    stop_slow = asyncio.Event()
    fast_seen: list[int] = []

    @bus.consumer("orders.created", group="fast")
    async def fast(event: Event) -> None:
        fast_seen.append(event.data["n"])

    @bus.consumer("orders.created", group="stalled", concurrency=1)
    async def stalled(event: Event) -> None:
        if event.data["n"] >= 20:
            await stop_slow.wait()

    async with bus:
        for n in range(50):
            await bus.publish("orders.created", {"n": n}, durable=True)
        await wait_for(lambda: len(fast_seen) == 50, 10, "the fast group")
        keeper = RetentionKeeper(bus.streams.client, bus.config, bus.stats)
        removed = await keeper.check("orders.created")
        info = await bus.streams.stream("orders.created")
        stop_slow.set()
    # 'stalled' is stuck on n=20: entries 0..19 are acked by both groups and trimmed;
    # everything from n=20 on is kept although the soft limit is 10.
    assert removed == 20
    assert info.length == 30
    client = aioredis.Redis.from_url(redis_url)
    try:
        first = await client.xrange(keys.stream("orders.created"), count=1)
        assert Event.from_json(first[0][1][b"e"]).data["n"] == 20
    finally:
        await client.aclose()
    assert bus.stats.get("lost_trimmed") == 0


async def test_hard_cap_losses_are_detected_and_counted(
    redis_url: str, key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    bus = make_bus(redis_url, key_prefix, stream_hard_max_len=10, retention_interval_s=3600)
    gate = asyncio.Event()
    handled: list[int] = []

    @bus.consumer("orders.created", group="behind", concurrency=1)
    async def behind(event: Event) -> None:
        await gate.wait()
        handled.append(event.data["n"])

    async with bus:
        for n in range(300):  # MAXLEN ~ 10 trims whole macro nodes of 100 entries
            await bus.publish("orders.created", {"n": n}, durable=True)
        keeper = RetentionKeeper(bus.streams.client, bus.config, bus.stats)
        await keeper.check("orders.created")
        gate.set()
    assert bus.stats.get("lost_trimmed") >= 100
    assert "lost" in caplog.text
