"""The reclaim walk on a real redis-server: it takes over every abandoned entry in one
walk, and reads Redis's delivery counts with them, so an entry that kept killing its
consumers is dead-lettered without calling the handler again."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aredis

from mozaiks_bus import Bus, Event, load_settings
from mozaiks_bus.keys import Keys
from tests.support import wait_for

pytestmark = [pytest.mark.integration]
TYPE = "orders.created"


async def _abandon(url: str, key: str, group: str, ids: list[str],
                   retry_counts: dict[str, int]) -> None:
    """Every entry read by a dead consumer ``ghost``; some with a delivery count set
    (as if they had killed that many consumers already)."""
    client = aredis.Redis.from_url(url)
    try:
        await client.xgroup_create(key, group, id="0")
        read = 0
        while read < len(ids):
            reply = await client.xreadgroup(group, "ghost", {key: ">"}, count=500)
            read += len(reply[0][1]) if reply else 0
        for entry_id, count in retry_counts.items():
            await client.execute_command("XCLAIM", key, group, "ghost", 0, entry_id,
                                         "RETRYCOUNT", count)
    finally:
        await client.aclose()


async def test_one_walk_takes_over_everything_and_dead_letters_what_killed_consumers(
    redis_url: str, key_prefix: str
) -> None:
    settings = load_settings(broker_url=redis_url, prefix=key_prefix, consumer_min_idle_s=0.5,
                             consumer_claim_interval_s=0.5, env={})
    key = Keys(key_prefix).stream(TYPE)
    async with Bus(config=settings) as publisher:
        events = [await publisher.publish(TYPE, {"n": n}, durable=True) for n in range(700)]
    client = aredis.Redis.from_url(redis_url)
    entry_ids = [entry_id.decode() for entry_id, _ in await client.xrange(key)]
    await client.aclose()
    poison = entry_ids[350]  # delivered 5 times already: the next delivery is the 6th
    await _abandon(redis_url, key, "shipping", entry_ids, {poison: 5})
    await asyncio.sleep(0.6)  # idle past the min idle time
    handled: list[str] = []
    consumer = Bus(config=settings)

    @consumer.consumer(TYPE, group="shipping", max_deliveries=5)
    async def ship(event: Event) -> None:
        handled.append(event.id)

    async with consumer:
        await wait_for(lambda: len(handled) >= 699, 30, "the abandoned entries handled")
        info = await consumer.streams.stream(TYPE)
        await wait_for(lambda: consumer.stats.get("reclaimed") >= 700, 10, "every reclaim")
        letters = await consumer.streams.dead_letters([TYPE])
    poisoned = events[350].id
    assert poisoned not in handled  # dead-lettered without calling the handler again
    assert sorted(handled) == sorted(e.id for e in events if e.id != poisoned)
    assert [letter.event["id"] for letter in letters] == [poisoned]
    assert info.groups[0].pending <= 1
