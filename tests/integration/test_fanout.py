"""Fan-out across real processes over a real redis-server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from mozaiks_bus import BrokerUnavailable, Bus, Event, InvalidEvent, PublishFailed
from mozaiks_bus.compat import EventBus
from mozaiks_bus.transports.redis import RECONNECTED_EVENT
from tests.redis_server import RedisServer
from tests.support import FAST, make_bus, wait_for

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
HEALTH_S = FAST["health_check_interval_s"]  # the detection bound is 2x this




async def receiving(bus: Bus) -> None:
    await wait_for(lambda: bus.health()["listener"] == "receiving", 10, "the listener")


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def spawn(procs: list[subprocess.Popen[str]], *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.fanout_proc", *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("MOZAIKS_")},
    )
    procs.append(proc)
    return proc


def test_three_subscriber_processes_get_every_event_once_in_order(
    redis_url: str, key_prefix: str, procs: list[subprocess.Popen[str]]
) -> None:
    three_subscribers_get_every_event_once_in_order(redis_url, key_prefix, procs)


def three_subscribers_get_every_event_once_in_order(
    redis_url: str, key_prefix: str, procs: list[subprocess.Popen[str]], count: int = 1000
) -> None:
    """Three subscriber processes, then an emitter process: each subscriber gets all
    ``count`` events once, in order (shared with the cluster tests)."""
    subscribers = [spawn(procs, "subscribe", redis_url, key_prefix, str(count)) for _ in range(3)]
    for proc in subscribers:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.stderr
    emitter = spawn(procs, "emit", redis_url, key_prefix, str(count))
    out, err = emitter.communicate(timeout=60)
    assert emitter.returncode == 0, err
    assert out.strip() == "own " + ",".join(map(str, range(count)))
    for proc in subscribers:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert [int(line) for line in out.split()] == list(range(count))


async def test_publisher_gets_its_own_event_once_and_others_once(
    redis_url: str, key_prefix: str
) -> None:
    a, b = make_bus(redis_url, key_prefix), make_bus(redis_url, key_prefix)
    got_a: list[str] = []
    got_b: list[str] = []
    a.subscribe("settings_updated", lambda e: got_a.append(e.id))
    b.subscribe("settings_updated", lambda e: got_b.append(e.id))
    async with a, b:
        await receiving(a)
        await receiving(b)
        first = a.emit("settings_updated", {"user_id": "u", "plugin": "p"})
        second = await a.publish("settings_updated", {"user_id": "u", "plugin": "p"})
        await wait_for(lambda: len(got_b) == 2, 5, "b to receive both")
        await asyncio.sleep(0.2)  # would a duplicate come back to a?
    assert got_a == [first.id, second.id]
    assert got_b == [first.id, second.id]


async def test_overlapping_patterns_deliver_each_subscription_once(
    redis_url: str, key_prefix: str
) -> None:
    sender, receiver = make_bus(redis_url, key_prefix), make_bus(redis_url, key_prefix)
    seen: list[str] = []
    receiver.subscribe("*", lambda e: seen.append(f"all:{e.type}"))
    receiver.subscribe("subscription_*", lambda e: seen.append(f"sub:{e.type}"))
    receiver.subscribe("subscription_updated", lambda e: seen.append(f"exact:{e.type}"))
    async with sender, receiver:
        await receiving(receiver)
        await asyncio.sleep(0.1)  # the three PSUBSCRIBEs are applied
        await sender.publish("subscription_updated", {"user_id": "u", "plan": "pro"})
        await sender.publish("theme_changed", {"user_id": "u", "theme": "dark"})
        await wait_for(lambda: len(seen) == 4, 5, "four deliveries")
        await asyncio.sleep(0.2)
    assert sorted(seen) == [
        "all:subscription_updated", "all:theme_changed",
        "exact:subscription_updated", "sub:subscription_updated",
    ]


async def test_events_are_decoded_into_events_equal_to_what_was_sent(
    redis_url: str, key_prefix: str
) -> None:
    sender, receiver = make_bus(redis_url, key_prefix), make_bus(redis_url, key_prefix)
    received: list[Event] = []
    receiver.subscribe("module_status", received.append)
    async with sender, receiver:
        await receiving(receiver)
        sent = await sender.publish(
            "module_status",
            {"category": "ops", "severity": "debug", "t": "2026-01-01T00:00:00Z",
             "module": "m", "enabled": True, "ok": True, "lastRunUtc": None, "error": None,
             "details": {"ünïcode": "✓", "n": [1, 2.5]}},
            correlationid="corr-7",
        )
        await wait_for(lambda: received, 5, "the event")
    assert received[0] == sent
    assert received[0].source == sender.service


def test_emit_without_a_loop_while_redis_is_down_then_recovers(
    redis_server: RedisServer, key_prefix: str
) -> None:
    url = redis_server.url
    sender = make_bus(url, key_prefix, emit_buffer_size=50)
    receiver = make_bus(url, key_prefix)
    got: list[int] = []
    arrived = threading.Event()

    def on_event(event: Event) -> None:
        got.append(event.data["n"])
        if event.data["n"] >= 1000:
            arrived.set()

    receiver.subscribe("settings_updated", on_event)
    receiver.emit("bus.warmup")  # starts the receiver's transport on its loop thread
    deadline = time.monotonic() + 10
    while receiver.health()["listener"] != "receiving" and time.monotonic() < deadline:
        time.sleep(0.02)

    redis_server.stop()
    started = time.monotonic()
    for n in range(500):  # plain sync code, no running loop, Redis down
        sender.emit("settings_updated", {"user_id": "u", "plugin": "p", "n": n})
    assert time.monotonic() - started < 2.0  # returned at once: nothing blocked
    deadline = time.monotonic() + 10
    while sender.stats.get("dropped_remote") < 450 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sender.stats.get("dropped_remote") >= 450  # the buffer holds at most 50

    redis_server.start()
    deadline = time.monotonic() + 15
    n = 1000
    while not arrived.is_set() and time.monotonic() < deadline:
        sender.emit("settings_updated", {"user_id": "u", "plugin": "p", "n": n})
        n += 1
        arrived.wait(0.1)
    assert arrived.is_set(), "no event flowed after Redis came back"
    assert receiver.stats.get("reconnects") >= 1
    asyncio.run(sender.stop())
    asyncio.run(receiver.stop())


async def test_a_killed_pubsub_connection_is_resubscribed_counted_and_announced(
    redis_url: str, key_prefix: str
) -> None:
    sender, receiver = make_bus(redis_url, key_prefix), make_bus(redis_url, key_prefix)
    got: list[int] = []
    reconnected: list[Event] = []
    receiver.subscribe("settings_updated", lambda e: got.append(e.data["n"]))
    receiver.subscribe(RECONNECTED_EVENT, reconnected.append)
    admin = redis.Redis.from_url(redis_url)
    try:
        async with sender, receiver:
            await receiving(receiver)
            killed = admin.client_kill_filter(_type="pubsub")
            assert killed >= 1
            started = time.monotonic()
            await wait_for(lambda: receiver.stats.get("reconnects") >= 1, 2 * HEALTH_S + 3,
                           "the reconnect")
            await receiving(receiver)
            assert time.monotonic() - started < 2 * HEALTH_S + 3
            await sender.publish("settings_updated", {"user_id": "u", "plugin": "p", "n": 1})
            await wait_for(lambda: got == [1], 5, "an event after the reconnect")
    finally:
        admin.close()
    assert reconnected
    assert reconnected[0].data["reconnects"] == 1


async def test_a_silent_link_is_detected_within_the_bound(
    redis_server: RedisServer, key_prefix: str
) -> None:
    """CLIENT PAUSE makes the server accept PING but never answer: a half-open link."""
    receiver = make_bus(redis_server.url, key_prefix)
    receiver.subscribe("settings_updated", lambda e: None)
    admin = redis.Redis.from_url(redis_server.url)
    try:
        async with receiver:
            await receiving(receiver)
            admin.execute_command("CLIENT", "PAUSE", "4000", "ALL")
            started = time.monotonic()
            await wait_for(lambda: receiver.health()["listener"] != "receiving",
                           4 * HEALTH_S + 1, "the silent link to be noticed")
            noticed = time.monotonic() - started
            assert receiver.health()["receiving"] is False
            assert noticed <= 4 * HEALTH_S + 1
            admin.execute_command("CLIENT", "UNPAUSE")
            await wait_for(lambda: receiver.health()["listener"] == "receiving", 10,
                           "the link to come back")
            assert receiver.stats.get("reconnects") >= 1
    finally:
        admin.close()


async def test_confirmed_publish_raises_when_redis_is_down(
    redis_server: RedisServer, key_prefix: str
) -> None:
    bus = make_bus(redis_server.url, key_prefix, publish_timeout_s=2.0)
    seen: list[Event] = []
    bus.subscribe("settings_updated", seen.append)
    async with bus:
        await bus.publish("settings_updated", {"user_id": "u", "plugin": "p"})
        redis_server.stop()
        started = time.monotonic()
        with pytest.raises((BrokerUnavailable, PublishFailed)):
            await bus.publish("settings_updated", {"user_id": "u", "plugin": "p"})
        assert time.monotonic() - started < 3.0
        assert len(seen) == 1  # the failed publish ran no local handler
        redis_server.start()
        await bus.publish("settings_updated", {"user_id": "u", "plugin": "p"})
        assert len(seen) == 2


async def test_slow_async_handler_bounds_memory_for_remote_bursts(
    redis_url: str, key_prefix: str
) -> None:
    sender = make_bus(redis_url, key_prefix)
    receiver = make_bus(redis_url, key_prefix, subscriber_queue_size=20)
    release = asyncio.Event()
    handled: list[int] = []

    async def slow(event: Event) -> None:
        await release.wait()
        handled.append(event.data["n"])

    receiver.subscribe("settings_updated", slow)
    async with sender, receiver:
        await receiving(receiver)
        subscription = receiver._local.subscriptions[0]
        peak = 0
        for n in range(2000):
            sender.emit("settings_updated", {"user_id": "u", "plugin": "p", "n": n})
            if n % 100 == 0:
                await asyncio.sleep(0)
                peak = max(peak, subscription.queued)
        await wait_for(lambda: receiver.stats.get("received_remote") == 2000, 10, "the burst")
        peak = max(peak, subscription.queued)
        release.set()
    assert peak <= 20
    assert handled[-20:] == list(range(1980, 2000))  # drop_oldest keeps the newest
    assert receiver.stats.get("dropped_local") == 2000 - len(handled)


async def test_compat_event_bus_bridges_json_safe_payloads_only(
    redis_url: str, key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    a = EventBus(make_bus(redis_url, key_prefix))
    b = EventBus(make_bus(redis_url, key_prefix))
    got_b: list[dict[str, Any]] = []
    got_a: list[dict[str, Any]] = []
    b.subscribe("plugin_settings_updated", got_b.append)
    a.subscribe("plugin_settings_updated", got_a.append)
    b.subscribe("chat.structured_output_ready", got_b.append)
    await a.connect()
    await b.connect()
    try:
        assert b._bus is not None
        await receiving(b._bus)
        payload = {"user_id": "u1", "plugin": "crm"}
        assert a.publish("plugin_settings_updated", payload) is None
        await wait_for(lambda: got_b, 5, "the bridged event")
        assert got_b == [payload]
        assert got_b[0] is not payload  # decoded in the other "process"
        assert got_a == [payload]
        assert got_a[0] is payload
        live = {"_pattern_context_ref": object(), "kind": "structured_output_ready"}
        for _ in range(3):
            a.publish("chat.structured_output_ready", live)
        a.publish("plugin_settings_updated", {"user_id": "u1", "when": object()})
        await asyncio.sleep(0.3)
        assert got_b == [payload]
        assert b.get_stats()["events_published"] == 0  # remote arrivals aren't publishes
        assert caplog.text.count("not a JSON-safe object") == 1  # logged once per name
        assert "plugin_settings_updated stays local" in caplog.text
        assert "structured_output_ready" not in caplog.text  # routed local: no warning
    finally:
        await a.close()
        await b.close()


async def test_one_unsendable_item_does_not_stop_the_sender(
    redis_url: str, key_prefix: str
) -> None:
    bus = make_bus(redis_url, key_prefix)
    async with bus:
        transport: Any = bus.transport
        with pytest.raises(InvalidEvent):
            await transport.ui.append("bad{chat}" * 100, '{"type":"x","data":{}}')
        event = await bus.publish("settings_updated", {"user_id": "u", "plugin": "p"})
        assert event.type == "settings_updated"  # the sender is still alive
