"""The drop-in for the platform's event_bus, called exactly as the platform calls it.

Event names and payloads are the ones the platform's in-process bus carries today.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

import mozaiks_bus.compat.runtime_bus as event_bus_module
from mozaiks_bus import Bus, ConfigError, Event, compat
from mozaiks_bus.compat import EventBus, NoOpBroker, attach_dispatcher, get_broker_adapter


def module_status_payload() -> dict[str, Any]:
    """What ops/signals.py emit_module_status() publishes."""
    return {
        "category": "ops", "severity": "debug",
        "t": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "module": "billing", "enabled": True, "ok": False,
        "lastRunUtc": None, "error": "timeout", "details": {"attempt": 2},
    }


def test_publish_from_plain_sync_code_with_no_loop_and_no_redis() -> None:
    bus = EventBus()
    got: list[dict[str, Any]] = []
    bus.subscribe("module_status", got.append)
    payload = module_status_payload()
    result_box: list[object] = []

    def signals_module() -> None:  # like tests/test_ops_signals.py: no loop anywhere
        result_box.append(bus.publish("module_status", payload))

    worker = threading.Thread(target=signals_module)
    worker.start()
    worker.join(5)
    assert result_box == [None]
    assert got == [payload]
    assert got[0] is payload  # by reference, not a copy


def test_callbacks_get_the_dict_by_reference_and_run_inline_in_order() -> None:
    bus = EventBus()
    order: list[str] = []

    def first(data: dict[str, Any]) -> None:
        order.append("first")
        data["seen_by_first"] = True

    def second(data: dict[str, Any]) -> None:
        order.append(f"second:{data.get('seen_by_first')}")

    bus.subscribe("settings_updated", first)
    bus.subscribe("settings_updated", second)
    data = {"user_id": "u1", "plugin": "crm"}
    assert bus.publish("settings_updated", data) is None
    assert order == ["first", "second:True"]
    assert data["seen_by_first"] is True


def test_exact_name_matching_with_underscore_dot_and_colon() -> None:
    bus = EventBus()
    got: list[str] = []
    for name in ("plugin:event", "entitlement.consumed", "subscription_canceled"):
        bus.subscribe(name, lambda data, name=name: got.append(name))
    bus.publish("plugin:event", {})
    bus.publish("entitlement.consumed", {"user_id": "u"})
    bus.publish("subscription_canceled", {"user_id": "u"})
    bus.publish("subscription_cancelled", {"user_id": "u"})  # two l's: nobody listens
    bus.publish("entitlement.*", {})  # no patterns in the drop-in
    assert got == ["plugin:event", "entitlement.consumed", "subscription_canceled"]


def test_a_failing_callback_is_logged_counted_and_isolated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus()
    got: list[str] = []

    def log_subscription_change(data: dict[str, Any]) -> None:  # the platform's default
        got.append(f"{data['user_id']} -> {data['plan']}")

    bus.subscribe("subscription_updated", log_subscription_change)
    bus.subscribe("subscription_updated", lambda data: got.append("after"))
    with caplog.at_level(logging.ERROR):
        bus.publish("subscription_updated", {"user_id": "u1"})  # no 'plan': KeyError
    assert got == ["after"]
    stats = bus.get_stats()
    assert stats == {
        "events_published": 1, "events_delivered": 1, "delivery_failures": 1,
        "events_by_type": {"subscription_updated": 1},
    }
    assert "log_subscription_change" in caplog.text
    assert "KeyError" in caplog.text


async def test_async_callbacks_run_as_tasks_like_notifications_manager() -> None:
    bus = EventBus()
    handled = asyncio.Event()
    seen: list[tuple[str, str]] = []

    class NotificationsManager:
        async def _handle_subscription_updated(self, data: dict[str, Any]) -> None:
            seen.append((data["user_id"], data["plan"]))
            handled.set()

        def register_event_handlers(self) -> None:
            bus.subscribe("subscription_updated", self._handle_subscription_updated)

    NotificationsManager().register_event_handlers()
    assert bus.publish("subscription_updated", {"user_id": "u1", "plan": "pro"}) is None
    assert seen == []  # scheduled as a task, not run inline
    await asyncio.wait_for(handled.wait(), 5)
    assert seen == [("u1", "pro")]
    assert bus.get_stats()["events_delivered"] == 1


async def test_async_callbacks_are_retried_up_to_three_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(event_bus_module, "ASYNC_RETRY_DELAYS", (0.01, 0.02, 0.04))
    bus = EventBus()
    attempts: list[int] = []
    finished = asyncio.Event()

    async def flaky(data: dict[str, Any]) -> None:
        attempts.append(len(attempts) + 1)
        if len(attempts) < 3:
            raise ConnectionError("transient")
        finished.set()

    async def always_broken(data: dict[str, Any]) -> None:
        attempts.append(100)
        raise RuntimeError("permanent")

    bus.subscribe("plugin_settings_updated", flaky)
    bus.publish("plugin_settings_updated", {"user_id": "u", "plugin": "p"})
    await asyncio.wait_for(finished.wait(), 5)
    assert attempts == [1, 2, 3]
    bus.unsubscribe("plugin_settings_updated", flaky)
    bus.subscribe("plugin_settings_updated", always_broken)
    bus.publish("plugin_settings_updated", {"user_id": "u", "plugin": "p"})
    for _ in range(200):
        if bus.get_stats()["delivery_failures"]:
            break
        await asyncio.sleep(0.01)
    assert attempts.count(100) == 4  # first try + 3 retries
    assert bus.get_stats()["delivery_failures"] == 1
    assert bus.get_stats()["events_delivered"] == 1


def test_async_callbacks_work_without_a_running_loop() -> None:
    bus = EventBus()
    done = threading.Event()

    async def handler(data: dict[str, Any]) -> None:
        done.set()

    bus.subscribe("theme_changed", handler)
    bus.publish("theme_changed", {"user_id": "u", "theme": "dark"})
    assert done.wait(5)
    asyncio.run(bus.close())


def test_unsubscribe_removes_the_first_equal_callback_and_ignores_unknowns() -> None:
    bus = EventBus()
    got: list[int] = []

    def cb(data: dict[str, Any]) -> None:
        got.append(1)

    bus.subscribe("profile_updated", cb)
    bus.subscribe("profile_updated", cb)
    bus.unsubscribe("profile_updated", cb)
    bus.publish("profile_updated", {"user_id": "u"})
    assert got == [1]
    bus.unsubscribe("profile_updated", cb)
    bus.unsubscribe("profile_updated", cb)  # already gone: ignored
    bus.unsubscribe("never_subscribed", cb)  # unknown event: ignored
    bus.publish("profile_updated", {"user_id": "u"})
    assert got == [1]


def test_on_event_decorator_returns_the_function_unchanged() -> None:
    bus = EventBus()
    got: list[dict[str, Any]] = []

    @bus.on_event("all_notifications_read")
    def handler(data: dict[str, Any]) -> None:
        got.append(data)

    assert handler.__name__ == "handler"
    bus.publish("all_notifications_read", {"user_id": "u"})
    assert got == [{"user_id": "u"}]


def test_history_keeps_the_last_hundred_per_event_with_the_platform_shape() -> None:
    bus = EventBus()
    for n in range(150):
        bus.publish("module_metric", {"n": n})
    bus.publish("api_error", {"path": "/x", "method": "GET", "error": "boom"})
    last_three = bus.get_event_history("module_metric", limit=3)
    assert list(last_three) == ["module_metric"]
    assert [entry["data"]["n"] for entry in last_three["module_metric"]] == [147, 148, 149]
    assert isinstance(last_three["module_metric"][0]["timestamp"], float)
    everything = bus.get_event_history(limit=1000)
    assert set(everything) == {"module_metric", "api_error"}
    assert len(everything["module_metric"]) == 100
    assert bus.get_event_history() == {
        "module_metric": everything["module_metric"][-10:],
        "api_error": everything["api_error"],
    }
    assert bus.get_event_history("never_published") == {"never_published": []}


def test_stats_are_copies_and_reset() -> None:
    bus = EventBus()
    bus.publish("profile_updated", {"user_id": "u"})
    stats = bus.get_stats()
    stats["events_by_type"]["profile_updated"] = 99
    assert bus.get_stats()["events_by_type"] == {"profile_updated": 1}
    bus.reset_stats()
    assert bus.get_stats() == {
        "events_published": 0, "events_delivered": 0, "delivery_failures": 0,
        "events_by_type": {},
    }


def test_publish_never_raises_even_for_nonsense() -> None:
    bus = EventBus()
    assert bus.publish(None, None) is None  # type: ignore[arg-type]
    assert bus.publish("x", object()) is None
    assert bus.publish("chat.structured_output_ready", {"_pattern_context_ref": object()}) is None


def test_callbacks_without_a_name_are_tolerated() -> None:
    bus = EventBus()
    got: list[Any] = []
    bus.subscribe("profile_updated", functools.partial(got.append))
    bus.publish("profile_updated", {"user_id": "u"})
    assert got == [{"user_id": "u"}]


async def test_event_bridge_keyword_form_is_awaitable() -> None:
    bus = EventBus()
    got: list[dict[str, Any]] = []
    bus.subscribe("ai.artifact.created", got.append)
    data = {
        "user_id": "u", "app_id": "a", "artifact_type": "doc", "artifact_id": "x1",
        "workflow_name": "wf",
    }
    await bus.publish(event_type="ai.artifact.created", data=data)  # type: ignore[misc]
    assert got == [data]


async def test_interface_methods_exist_and_are_harmless() -> None:
    bus = EventBus()
    await bus.connect()
    await bus.start_background_processing()
    await bus.stop_background_processing()
    await bus.close()
    assert isinstance(compat.event_bus, EventBus)


async def test_broker_adapter_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MOZAIKS_BROKER_URL", raising=False)
    adapter = get_broker_adapter()
    assert isinstance(adapter, NoOpBroker)
    assert isinstance(adapter, compat.BrokerAdapter)
    await adapter.publish("x", {})
    await adapter.close()
    monkeypatch.setenv("MOZAIKS_BROKER_URL", "amqp://guest:secret@127.0.0.1:5672/")
    with pytest.raises(ConfigError) as info:
        get_broker_adapter()
    assert "secret" not in str(info.value)
    assert "redis://" in str(info.value)


class FakeDispatcher:
    """The string-keyed half of UnifiedEventDispatcher, as the research page describes it."""

    def __init__(self) -> None:
        self._event_handlers: dict[str, list[Callable[[dict[str, Any]], Any]]] = {}

    def register_handler(self, handler_or_event_type: Any, handler: Any = None) -> None:
        if isinstance(handler_or_event_type, str):
            if handler is None:
                raise ValueError("handler required")
            self._event_handlers.setdefault(handler_or_event_type, []).append(handler)
            return
        raise TypeError("typed handlers are not used here")

    async def emit(self, event_type: str, payload: dict[str, Any]) -> None:
        for listener in list(self._event_handlers.get(event_type, [])):
            try:
                listener(payload)
            except Exception:  # the dispatcher logs and goes on
                logging.getLogger("dispatcher").exception("listener failed")


async def test_attach_dispatcher_forwards_usage_and_run_complete() -> None:
    dispatcher = FakeDispatcher()
    received: list[Event] = []
    async with Bus() as bus:
        bus.subscribe("chat.*", received.append)
        handlers = attach_dispatcher(dispatcher, bus)
        assert len(handlers) == 2
        summary = {
            "event_id": "abc123def456", "event_ts": "2026-01-01T00:00:00Z", "chat_id": "c1",
            "app_id": "a", "user_id": "u", "workflow_name": "wf", "prompt_tokens": 10,
            "completion_tokens": 5, "total_tokens": 15,
        }
        await dispatcher.emit("chat.usage_summary", summary)
        await dispatcher.emit(
            "chat.run_complete",
            {"chat_id": "c1", "workflow_name": "wf", "app_id": "a", "user_id": "u",
             "status": "completed"},
        )
        await dispatcher.emit("chat.usage_summary", {"chat_id": "c1", "total_tokens": -1})
    assert [event.type for event in received] == ["chat.usage_summary", "chat.run_complete"]
    assert received[0].data is summary
    assert received[0].subject == "c1"
