"""``mozaiks_bus.testing`` as a downstream team uses it: the service's own module-level
bus runs on an in-process server (no Redis), with durable semantics kept."""

from __future__ import annotations

import asyncio
import importlib
import sys
from datetime import UTC, datetime
from types import ModuleType

import pytest

from mozaiks_bus import testing


def usage(event_id: str, app_id: str = "app-1") -> dict[str, object]:
    return {"event_id": event_id, "event_ts": datetime.now(UTC).isoformat(),
            "chat_id": "chat-1", "app_id": app_id, "user_id": "u1",
            "workflow_name": "wf", "prompt_tokens": 10, "completion_tokens": 5,
            "total_tokens": 15}


@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("MOZAIKS_BROKER_URL", testing.memory_url())  # before the import
    sys.modules.pop("tests.unit.example_service", None)
    return importlib.import_module("tests.unit.example_service")


async def test_a_downstream_service_is_tested_without_redis(service: ModuleType) -> None:
    bus = service.bus
    recorder = testing.Recorder(bus)
    async with bus:
        await bus.publish("chat.usage_summary", usage("aaaaaaaaaaaa"), subject="chat-1")
        await bus.publish("chat.usage_summary", usage("bbbbbbbbbbbb", app_id=""),
                          subject="chat-1")
        await testing.drain(bus)
        letters = await testing.dead_letters(bus)
    assert sorted(recorder.types()) == ["chat.usage_summary", "chat.usage_summary",
                                        "notification.created"]
    assert recorder.data("notification.*") == [{
        "notification_id": "usage-aaaaaaaaaaaa", "user_id": "u1",
        "notification_type": "usage", "subject": "Usage recorded", "message": "15 tokens"}]
    assert [(dl.group, dl.deliveries, dl.event["data"]["event_id"]) for dl in letters] == [
        ("billing", 3, "bbbbbbbbbbbb")]  # retried, then dead-lettered, as on Redis
    assert "usage without an app_id" in letters[0].error


async def test_drain_names_what_is_still_busy() -> None:
    bus = testing.memory_bus()
    stuck = asyncio.Event()

    @bus.consumer("orders.created", group="slow")
    async def slow(event: object) -> None:
        await stuck.wait()

    async with bus:
        await bus.publish("orders.created", {"n": 1}, durable=True)
        with pytest.raises(TimeoutError, match=r"group slow on orders\.created: 1 pending"):
            await testing.drain(bus, timeout=0.5)
        stuck.set()
        await testing.drain(bus)


async def test_memory_urls_are_private_to_each_test() -> None:
    first, second = testing.memory_bus(), testing.memory_bus()
    seen: list[str] = []
    second.subscribe("theme_changed", lambda event: seen.append(event.id))
    async with first, second:
        await first.publish("theme_changed", {"user_id": "u", "theme": "dark"})
        await testing.drain(first)
        await testing.drain(second)
    assert seen == []  # another server: nothing crosses
    assert testing.memory_url() != testing.memory_url()
