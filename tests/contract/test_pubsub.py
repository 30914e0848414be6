"""Publishing and fan-out across buses: the same behaviour on every transport."""

from __future__ import annotations

import asyncio

import pytest

from mozaiks_bus import Event, InvalidEvent
from tests.contract.conftest import Backend
from tests.support import wait_for


async def test_publish_returns_the_stored_event_and_then_runs_local_handlers(
    backend: Backend,
) -> None:
    bus = backend.make_bus()
    seen: list[str] = []
    bus.subscribe("settings_updated", lambda event: seen.append(event.id))
    async with bus:
        event = await bus.publish("settings_updated", {"user_id": "u", "plugin": "crm"},
                                  id="evt-1")
    assert (event.id, event.type, seen) == ("evt-1", "settings_updated", ["evt-1"])





async def test_fan_out_reaches_another_bus_once_and_the_publisher_locally_once(
    backend: Backend,
) -> None:
    backend.require("remote")
    publisher, receiver = backend.make_bus(), backend.make_bus()
    mine: list[str] = []
    theirs: list[str] = []
    publisher.subscribe("theme_changed", lambda event: mine.append(event.id))
    receiver.subscribe("theme_*", lambda event: theirs.append(event.id))
    receiver.subscribe("theme_changed", lambda event: theirs.append(event.id))  # overlap
    async with publisher, receiver:
        await wait_for(lambda: receiver.health()["listener"] == "receiving", 5, "the listener")
        sent = [(await publisher.publish("theme_changed", {"user_id": "u", "theme": str(n)})).id
                for n in range(20)]
        await wait_for(lambda: len(theirs) >= 40, 5, "fan-out")
        await asyncio.sleep(0.2)
    assert mine == sent
    assert theirs[::2] == sent  # two subscriptions: each gets every event once
    assert theirs[1::2] == sent


async def test_a_batch_is_published_whole_or_not_at_all(backend: Backend) -> None:
    bus = backend.make_bus()
    seen: list[str] = []
    bus.subscribe("orders.*", lambda event: seen.append(event.id))
    good = [Event.create("orders.created", {"n": n}, id=f"o{n}") for n in range(3)]
    bad = Event.create("theme_changed", {"theme": 3})  # fails its catalog model
    async with bus:
        with pytest.raises(InvalidEvent):
            await bus.publish_events([*good, bad])
        assert seen == []
        await bus.publish_events(good)
    assert seen == ["o0", "o1", "o2"]
