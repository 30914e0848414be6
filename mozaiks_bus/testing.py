"""A test double for services that use the bus: no Redis, the real semantics.

``memory://`` runs the whole Redis side of a bus on fakeredis inside the test process:
the same transport, consumer groups, acks, retries, dead letters and ui history as on a
real Redis (the behavioural suite in ``tests/contract/`` runs on it for that reason).
This module adds what a downstream test needs around it::

    from mozaiks_bus import testing

    async def test_billing_notifies_on_usage(monkeypatch):
        monkeypatch.setenv("MOZAIKS_BROKER_URL", testing.memory_url())  # before the app
        from billing.events import bus                                   # builds its Bus
        recorder = testing.Recorder(bus)
        async with bus:
            await bus.publish("chat.usage_summary", {...}, subject="chat-1")
            await testing.drain(bus)                 # every consumer has finished
        assert recorder.types() == ["chat.usage_summary", "notification.created"]

* :func:`memory_url` names a fresh in-process server (each call a new one);
  :func:`memory_bus` builds a bus on one, with timings short enough for tests.
* :class:`Recorder` captures every event the bus delivers locally: everything published
  through it (whatever its scopes) and what arrives from other buses on the same server.
* :func:`drain` waits until the bus is idle: emitted events handed over, every durable
  group caught up with nothing pending (retries included: a failing handler is retried
  or dead-lettered first), local async handlers done. It raises ``TimeoutError`` naming
  what is still busy.
* :func:`dead_letters` lists what the durable consumers gave up on.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from mozaiks_bus.bus import Bus
from mozaiks_bus.durable.streams import DeadLetter
from mozaiks_bus.event import Event
from mozaiks_bus.patterns import compile_pattern
from mozaiks_bus.settings import load_settings

__all__ = ["TEST_TIMINGS", "Recorder", "dead_letters", "drain", "memory_bus", "memory_url"]

TEST_TIMINGS: dict[str, Any] = {
    "consumer_block_ms": 50, "consumer_claim_interval_s": 0.1, "consumer_min_idle_s": 1.0,
    "health_check_interval_s": 0.5, "retention_interval_s": 60.0,
}
"""Settings :func:`memory_bus` uses: reads wake often, a crashed consumer's entries are
reclaimed after a second."""
_POLL_S = 0.02


def memory_url() -> str:
    """A ``memory://`` URL of a server no other test uses."""
    return f"memory://test-{uuid.uuid4().hex[:12]}"


def memory_bus(url: str | None = None, *, service: str = "test", **settings: Any) -> Bus:
    """A bus on ``url`` (default: a fresh :func:`memory_url`) with :data:`TEST_TIMINGS`;
    ``settings`` override them (any :class:`~mozaiks_bus.BusSettings` field)."""
    values = {**TEST_TIMINGS, **settings}
    return Bus(config=load_settings(broker_url=url or memory_url(), service=service,
                                    env={}, **values))


class Recorder:
    """Every event ``bus`` delivers in this process, in delivery order."""

    def __init__(self, bus: Bus, pattern: str = "*") -> None:
        self.events: list[Event] = []
        self._pattern = pattern
        self._bus = bus
        bus.subscribe(pattern, self.events.append)

    def of(self, pattern: str) -> list[Event]:
        """The recorded events whose type matches ``pattern``."""
        matcher = compile_pattern(pattern)
        return [event for event in self.events if matcher.matches(event.type)]

    def types(self) -> list[str]:
        """The recorded event types, in order."""
        return [event.type for event in self.events]

    def data(self, pattern: str = "*") -> list[dict[str, Any]]:
        """The ``data`` of the recorded events matching ``pattern``."""
        return [event.data for event in self.of(pattern)]

    def clear(self) -> None:
        """Forget what was recorded so far."""
        self.events.clear()

    def close(self) -> None:
        """Stop recording."""
        self._bus.unsubscribe(self._pattern, self.events.append)


async def drain(bus: Bus, timeout: float = 10.0) -> None:
    """Wait until ``bus`` is idle (see the module docstring); ``TimeoutError`` naming what
    is still busy after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    busy = "the bus"
    while time.monotonic() < deadline:
        busy = await _busy(bus, deadline)
        if not busy:
            return
        await asyncio.sleep(_POLL_S)
    raise TimeoutError(f"not idle after {timeout}s: {busy}")


async def dead_letters(bus: Bus, pattern: str = "*") -> list[DeadLetter]:
    """The durable dead letters of the types matching ``pattern``, newest first."""
    matcher = compile_pattern(pattern)
    types = [name for name in await bus.streams.types() if matcher.matches(name)]
    return await bus.streams.dead_letters(types, limit=10_000)


async def _busy(bus: Bus, deadline: float) -> str:
    """What is still busy ("" when nothing is)."""
    if not await bus.flush(max(0.0, deadline - time.monotonic())):
        return "emitted events not yet handed over"
    for local in (bus._local, bus._remote_only):  # the package's own bus: its internals
        if not all(sub.idle for sub in local.subscriptions):
            return "local async handlers"
    if bus.transport.streams is None:
        return ""
    for stream in await bus.streams.streams():
        for group in stream.groups:
            if group.pending:
                return f"group {group.name} on {stream.type}: {group.pending} pending"
            if stream.last_id is not None and _behind(group.last_delivered_id, stream.last_id):
                return f"group {group.name} on {stream.type}: not caught up"
    return ""


def _behind(delivered: str, last: str) -> bool:
    return _id_key(delivered) < _id_key(last)


def _id_key(entry_id: str) -> tuple[int, int]:
    millis, _, seq = entry_id.partition("-")
    return int(millis), int(seq or 0)
