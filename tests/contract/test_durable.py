"""Durable delivery: ack, retry, dead letter, reclaim, replay; the same on every transport
that has consumer groups (and, without one, a consumer is a plain local subscriber)."""

from __future__ import annotations

import asyncio

import pytest

from mozaiks_bus import ConfigError, Delivery, Event, InvalidEvent, RetryPolicy, Unprocessable
from tests.contract.conftest import Backend
from tests.support import wait_for

TYPE = "orders.created"
QUICK = RetryPolicy(base_s=0.01, max_s=0.05)


async def publish(bus: object, n: int) -> Event:
    return await bus.publish(TYPE, {"n": n}, durable=True, fanout=False)  # type: ignore[attr-defined]


async def test_without_durable_streams_a_consumer_is_a_plain_local_subscriber(
    backend: Backend,
) -> None:
    if backend.can.durable:
        pytest.skip(f"the {backend.name} transport has durable streams")
    bus = backend.make_bus()
    got: list[int] = []

    @bus.consumer(TYPE, group="billing")
    def bill(event: Event) -> None:
        got.append(event.data["n"])

    with pytest.raises(ConfigError, match="broker"):  # a Delivery needs durable streams
        bus.consumer(TYPE, group="tx")(lambda event, delivery: None)
    with pytest.raises(ConfigError, match="broker"):
        _ = bus.streams
    async with bus:
        await publish(bus, 1)
    assert got == [1]


async def test_a_returning_handler_acks_each_event_once(backend: Backend) -> None:
    backend.require("durable")
    publisher, consumer = backend.make_bus(), backend.make_bus()
    got: list[int] = []

    @consumer.consumer(TYPE, group="billing")
    async def bill(event: Event) -> None:
        got.append(event.data["n"])

    async with publisher:
        for n in range(5):  # published before the group exists: the group starts at 0
            await publish(publisher, n)
        async with consumer:
            for n in range(5, 10):
                await publish(publisher, n)
            await wait_for(lambda: len(got) == 10, 5, "ten deliveries")
            await wait_for(lambda: consumer.stats.get("acked") == 10, 5, "ten acks")
            info = await consumer.streams.stream(TYPE)
            await asyncio.sleep(0.3)
    assert sorted(got) == list(range(10))
    assert [(group.name, group.pending) for group in info.groups] == [("billing", 0)]


async def test_a_raising_handler_is_retried_with_the_same_event(backend: Backend) -> None:
    backend.require("durable")
    bus = backend.make_bus()
    attempts: list[tuple[str, int]] = []

    @bus.consumer(TYPE, group="flaky", retry=QUICK, max_deliveries=5)
    async def flaky(event: Event, delivery: Delivery) -> None:
        attempts.append((event.id, delivery.deliveries))
        if delivery.deliveries < 3:
            raise RuntimeError("not yet")

    async with bus:
        sent = await publish(bus, 1)
        await wait_for(lambda: bus.stats.get("acked") == 1, 5, "the third attempt's ack")
    assert attempts == [(sent.id, 1), (sent.id, 2), (sent.id, 3)]
    assert bus.stats.get("retried") == 2


async def test_after_max_deliveries_the_event_is_dead_lettered_and_can_be_replayed(
    backend: Backend,
) -> None:
    backend.require("durable")
    bus = backend.make_bus()
    healed = False
    handled: list[str] = []

    @bus.consumer(TYPE, group="poison", retry=QUICK, max_deliveries=2)
    async def handle(event: Event) -> None:
        if not healed:
            raise ValueError("bad data")
        handled.append(event.id)

    async with bus:
        sent = await publish(bus, 1)
        await wait_for(lambda: bus.stats.get("dead_lettered") == 1, 5, "the dead letter")
        letters = await bus.streams.dead_letters([TYPE])
        assert [(dl.event["id"], dl.group, dl.deliveries) for dl in letters] == \
            [(sent.id, "poison", 2)]
        assert "ValueError: bad data" in letters[0].error
        healed = True
        await bus.streams.replay_dead_letter(TYPE, letters[0].id)
        await wait_for(lambda: handled == [sent.id], 5, "the replayed event")
        assert await bus.streams.dead_letters([TYPE]) == []


async def test_unprocessable_dead_letters_at_once_without_a_retry(backend: Backend) -> None:
    backend.require("durable")
    bus = backend.make_bus()
    calls: list[int] = []

    @bus.consumer(TYPE, group="strict", retry=QUICK, max_deliveries=5)
    async def handle(event: Event) -> None:
        calls.append(event.data["n"])
        raise Unprocessable("the order names no customer")

    async with bus:
        sent = await publish(bus, 7)
        await wait_for(lambda: bus.stats.get("dead_lettered") == 1, 5, "the dead letter")
        [letter] = await bus.streams.dead_letters([TYPE])
    assert calls == [7], "called once, never retried"
    assert (letter.event["id"], letter.deliveries) == (sent.id, 1)
    assert "Unprocessable: the order names no customer" in letter.error


async def test_entries_a_stopped_consumer_held_are_reclaimed_by_another(
    backend: Backend,
) -> None:
    backend.require("durable")
    first = backend.make_bus(consumer_name="first")
    second = backend.make_bus(consumer_name="second")
    started = asyncio.Event()
    release = asyncio.Event()
    done_by: list[str] = []

    @first.consumer(TYPE, group="work")
    async def slow(event: Event) -> None:
        started.set()
        await release.wait()  # never returns before `first` stops: its entry stays pending

    @second.consumer(TYPE, group="work")
    async def quick(event: Event) -> None:
        done_by.append(event.id)

    async with first:
        sent = await publish(first, 1)
        await asyncio.wait_for(started.wait(), 5)
        await first.stop(timeout=0.1)  # hands the entry back, unacked
    async with second:  # min idle is 1 s in these tests (tests.support.FAST)
        await wait_for(lambda: done_by == [sent.id], 10, "the reclaim")
        assert second.stats.get("reclaimed") == 1
    release.set()


async def test_a_group_can_be_replayed_from_an_id(backend: Backend) -> None:
    backend.require("durable")
    bus = backend.make_bus()
    got: list[int] = []

    @bus.consumer(TYPE, group="reports")
    async def report(event: Event) -> None:
        got.append(event.data["n"])

    async with bus:
        for n in range(4):
            await publish(bus, n)
        await wait_for(lambda: len(got) == 4, 5, "the first pass")
        info = await bus.streams.stream(TYPE)
        third = info.last_id
        assert third is not None
        await bus.streams.replay_group(TYPE, "reports", from_id=third)
        await wait_for(lambda: len(got) == 5, 5, "the replay")
    assert got == [0, 1, 2, 3, 3]


async def test_every_group_gets_every_event(backend: Backend) -> None:
    backend.require("durable")
    bus = backend.make_bus()
    seen: dict[str, list[int]] = {"email": [], "audit": []}
    for group in seen:

        @bus.consumer(TYPE, group=group)
        async def handle(event: Event, _group: str = group) -> None:
            seen[_group].append(event.data["n"])

    async with bus:
        for n in range(3):
            await publish(bus, n)
        await wait_for(lambda: all(len(v) == 3 for v in seen.values()), 5, "both groups")
    assert seen == {"email": [0, 1, 2], "audit": [0, 1, 2]}


async def test_a_consumer_holds_at_most_its_prefetch_and_reads_ahead_of_its_workers(
    backend: Backend,
) -> None:
    backend.require("durable")
    bus = backend.make_bus()
    release = asyncio.Event()
    started: list[int] = []

    @bus.consumer(TYPE, group="slow", concurrency=2, prefetch=10)
    async def slow(event: Event) -> None:
        started.append(event.data["n"])
        await release.wait()

    async with bus:
        for n in range(50):
            await publish(bus, n)
        await wait_for(lambda: len(started) == 2, 5, "both workers busy")
        await asyncio.sleep(0.5)  # time for any over-read to show
        info = await bus.streams.stream(TYPE)
        held = info.groups[0].pending
        release.set()
        await wait_for(lambda: len(started) == 50, 10, "every event")
    assert len(started) == 50
    assert 2 < held <= 10  # read ahead of the two workers, never beyond the prefetch


@pytest.mark.parametrize(("concurrency", "prefetch"), [(4, 3), (4, 10_001)])
async def test_a_prefetch_outside_concurrency_to_10000_is_refused(
    backend: Backend, concurrency: int, prefetch: int,
) -> None:
    bus = backend.make_bus()
    with pytest.raises(InvalidEvent) as caught:
        bus.consumer(TYPE, group="g", concurrency=concurrency, prefetch=prefetch)(print)
    assert caught.value.field == "prefetch"


async def test_one_worker_still_reads_ahead_by_whole_reads_up_to_the_default_prefetch(
    backend: Backend,
) -> None:
    """The read size does not follow the concurrency: one slow worker's consumer reads
    on while fewer than a read's worth (100) of its prefetch (200) is free, and never
    holds more than the prefetch; the rest stays for other consumers."""
    backend.require("durable")
    bus = backend.make_bus()
    release = asyncio.Event()
    started: list[int] = []

    @bus.consumer(TYPE, group="one", concurrency=1)
    async def slow(event: Event) -> None:
        started.append(event.data["n"])
        await release.wait()

    async with bus:
        for n in range(250):
            await publish(bus, n)
        await wait_for(lambda: len(started) == 1, 5, "the worker busy")
        await asyncio.sleep(0.5)  # time for any over-read to show
        held = (await bus.streams.stream(TYPE)).groups[0].pending
        release.set()
        await wait_for(lambda: len(started) == 250, 10, "every event")
    assert started == list(range(250))  # one worker: stream order
    assert 100 < held <= 200


@pytest.mark.parametrize("read_count", [0, 1001])
async def test_a_read_count_outside_1_to_1000_is_refused(
    backend: Backend, read_count: int,
) -> None:
    bus = backend.make_bus()
    with pytest.raises(InvalidEvent) as caught:
        bus.consumer(TYPE, group="g", read_count=read_count)(print)
    assert caught.value.field == "read_count"
    assert "1 to 1000" in str(caught.value)


async def test_a_partitioned_type_keeps_each_subject_in_one_stream_in_order_and_a_group_shares_it(
    backend: Backend,
) -> None:
    """``stream_partitions``: four streams, a subject's events all in one of them in
    publish order; two consumers of one group handle every event between them (at least
    once), and a poison event is dead-lettered in its own partition."""
    backend.require("durable")
    parts = {"stream_partitions": {TYPE: 4}}
    publisher = backend.make_bus(**parts)
    consumers = [backend.make_bus(**parts) for _ in range(2)]
    handled: list[tuple[str, str, str]] = []  # (event id, Delivery.type, Delivery.stream)

    for bus in consumers:
        @bus.consumer(TYPE, group="usage", retry=QUICK)
        async def tally(event: Event, delivery: Delivery) -> None:
            if event.data["n"] == -1:
                raise Unprocessable("poison")
            handled.append((event.id, delivery.type, delivery.stream))

    subjects = [f"chat-{k}" for k in range(12)]
    async with publisher, consumers[0], consumers[1]:
        sent = [await publisher.publish(TYPE, {"n": n}, subject=subjects[n % 12], durable=True,
                                        fanout=False) for n in range(120)]
        poison = await publisher.publish(TYPE, {"n": -1}, subject="chat-0", durable=True,
                                         fanout=False)
        await wait_for(lambda: len(handled) >= 120, 10, "every event handled")
        await wait_for(lambda: publisher.stats.get("published") >= 121, 5, "stats")
        await asyncio.sleep(0.3)
        streams = {info.type: info for info in await publisher.streams.streams()}
        letters = await publisher.streams.dead_letters(sorted(streams))
        assert publisher.transport.streams is not None
        client = publisher.transport.streams.command_client()
        stored = {name: [Event.from_wire(fields[b"e"]) for _, fields in
                         await client.xrange(publisher.config.keys.stream(name))]
                  for name in streams}
    for events in stored.values():  # each subject's events in publish order
        for subject in subjects:
            numbers = [e.data["n"] for e in events if e.subject == subject and e.data["n"] >= 0]
            assert numbers == sorted(numbers)
    assert {event_id for event_id, _, _ in handled} == {e.id for e in sent}
    assert {kind for _, kind, _ in handled} == {TYPE}
    where = {event_id: stream for event_id, _, stream in handled}
    for subject in subjects:  # one subject, one partition
        assert len({where[e.id] for e in sent if e.subject == subject}) == 1
    assert set(streams) == {f"{TYPE}:p{k}" for k in range(4)}
    assert sum(info.length for info in streams.values()) == 121
    assert len(set(where.values())) >= 2  # the load is spread
    assert [letter.event["id"] for letter in letters] == [poison.id]
    assert where[sent[0].id] == letters[0].type  # chat-0's partition holds its dead letter
