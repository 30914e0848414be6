"""How the cluster sender plans a batch, and how the sender settles a partial one
(no network: the planning is pure, the sender runs on a fake executor)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis import exceptions as rexc
from redis.crc import key_slot

from mozaiks_bus import Event, load_settings
from mozaiks_bus.connection.availability import Availability
from mozaiks_bus.keys import Keys
from mozaiks_bus.routing import Scope
from mozaiks_bus.stats import BusStats
from mozaiks_bus.transports.cluster.router import ClusterRouter, CrossSlot, command_slot
from mozaiks_bus.transports.redis.commands import PartialBatch
from mozaiks_bus.transports.redis.items import EventItem
from mozaiks_bus.transports.redis.sender import Sender

KEYS = Keys("t")


def test_a_command_goes_by_its_first_key_and_a_script_by_its_declared_keys() -> None:
    stream = KEYS.stream("orders.created")
    assert command_slot(("XADD", stream, "*", "e", "{}")) == key_slot(stream.encode())
    history, channel = KEYS.ui_history("c1"), KEYS.ui_channel("c1")
    assert command_slot(("EVAL", "return 1", 2, history, channel, "x")) == \
        key_slot(history.encode())
    assert command_slot(("PUBLISH", KEYS.fanout_channel("a.b"), "m")) is None
    assert command_slot(("EVAL", "return 1", 0)) is None
    with pytest.raises(CrossSlot, match="CROSSSLOT"):
        command_slot(("EVAL", "return 1", 2, history, KEYS.stream("orders.created")))


def _router() -> ClusterRouter:
    return ClusterRouter(None, index_key=KEYS.stream_index(), retry_window_s=1.0)  # type: ignore[arg-type]


def test_a_block_keeps_its_slot_and_the_stream_index_leaves_it() -> None:
    stream = KEYS.stream("orders.created")
    commands: list[tuple[Any, ...]] = [
        ("PUBLISH", "t:fanout:x", "1"),
        ("MULTI",), ("XADD", stream, "*", "e", "{}"), ("SADD", KEYS.stream_index(), "o"),
        ("PUBLISH", "t:fanout:orders.created", "2"), ("EXEC",),
    ]
    replies: list[Any] = [None] * len(commands)
    units = _router()._units(commands, replies)
    assert [u.positions for u in units] == [[0], [3], [1, 2, 4, 5]]
    assert units[0].slot is None  # keyless: the publish node
    assert units[1].commands == [("SADD", KEYS.stream_index(), "o")]
    assert units[2].block
    assert units[2].slot == key_slot(stream.encode())
    assert replies[3] == b"QUEUED"  # where the block's SADD reply would have been


def test_a_block_across_slots_is_answered_crossslot_and_never_sent() -> None:
    commands: list[tuple[Any, ...]] = [
        ("MULTI",), ("XADD", KEYS.stream("a.one"), "*", "e", "{}"),
        ("XADD", KEYS.stream("b.two"), "*", "e", "{}"), ("EXEC",),
    ]
    [unit] = _router()._units(commands, [None] * 4)
    assert unit.commands == []
    assert all(isinstance(reply, CrossSlot) for reply in unit.replies)


def test_partial_batch_splits_items_by_their_commands() -> None:
    moved = rexc.ConnectionError("node lost")
    partial = PartialBatch([b"1-0", b"OK", moved, b"QUEUED", [b"2-0", rexc.ResponseError("x")]])
    done, failed, first = partial.split(["a", "b", "c"], [0, 1, 3], 5)
    assert done == [("a", 0)]
    assert failed == ["b", "c"]
    assert first is moved


async def test_the_sender_fails_only_the_items_a_partial_batch_lost() -> None:
    """One node lost after the write: its confirmed item fails, its emitted durable
    item goes back to the buffer; the other node's items succeed."""
    settings = load_settings(prefix="t")
    stats = BusStats()
    sender = Sender("redis+cluster://127.0.0.1:1", settings=settings, stats=stats, keys=KEYS,
                    origin="0" * 32, availability=Availability("x"))
    lost_stream = KEYS.stream("lost.type")
    calls: list[int] = []

    async def executor(commands: list[tuple[Any, ...]]) -> list[Any]:
        calls.append(len(commands))
        if len(calls) > 1:
            return [b"9-0"] * len(commands)
        raise PartialBatch([rexc.ConnectionError("gone") if c[1] == lost_stream else b"1-0"
                            for c in commands])

    ok = Event.create("kept.type", {"n": 1})
    lost = Event.create("lost.type", {"n": 2})
    emitted = Event.create("lost.type", {"n": 3})
    sender.publish_nowait(EventItem(emitted, Scope.DURABLE, emitted.to_json()))
    confirms = asyncio.gather(
        sender.confirm(EventItem(ok, Scope.DURABLE, ok.to_json())),
        sender.confirm(EventItem(lost, Scope.DURABLE, lost.to_json())),
        return_exceptions=True)
    await asyncio.sleep(0)  # all three queued: they make one batch
    sender.start(None, executor=executor)
    results = await confirms
    assert results[0] == b"1-0"
    assert isinstance(results[1], Exception)
    assert "gone" in str(results[1])
    assert await sender.flush(5)  # the emitted one was re-queued and sent again
    assert len(calls) >= 2
    assert stats.get("dropped_remote") == 0
    assert stats.get("sent_remote") == 2  # ok, then the re-queued emitted one
    await sender.stop()
