"""One scenario of ``mozaiks-bus prove``: a bounded load, faults at set points, a count.

A scenario has its own event type (``prove.<slug>``, so its own stream) and consumer
group; two consumer processes read it while this process publishes ``events`` confirmed
events. Each :class:`Fault` strikes once the consumers handled its share of the load
(``at``), and says which entries it affected:

* a SIGKILLed consumer: the entries pending on it in Redis right after the kill (its
  read-ahead and the calls in progress); a replacement process is started, as a
  supervisor would;
* a fault of the broker's links (``CLIENT KILL``, ``CLIENT PAUSE``, a failover): the
  events confirmed before it and not yet handled.

*Recovered in* is the time from the fault to the last affected entry handled again
(after the fault). The count (:class:`Outcome`): sent = confirmed publishes, delivered =
those with at least one handler call, lost = sent - delivered, duplicated = handler
calls beyond the first (at least once allows them).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from mozaiks_bus.bus import Bus
from mozaiks_bus.connection import AsyncClient, text
from mozaiks_bus.connection.redis_errors import REDIS_ERRORS, translate_redis_error
from mozaiks_bus.ops.prove_consumer import handled_key
from mozaiks_bus.ops.prove_load import ConsumerProcess, Record, publish_all, read_records

__all__ = ["Affected", "Fault", "Outcome", "Stage"]

_POLL_S = 0.2
_GRACE_S = 30.0  # a publish in flight at the deadline ends within publish_timeout_s
CONSUMERS = 2


@dataclass(frozen=True, slots=True)
class Affected:
    """What one fault hit: the stream entries (by entry id) or events (by event id) it
    left to recover, when it struck (``at``, ``time.time()``) and how many handler calls
    were recorded by then (``seen``: the records after it are the calls after the fault,
    even one whose push a killed connection delayed)."""

    at: float
    seen: int
    note: str
    entries: frozenset[str] = frozenset()
    events: frozenset[str] = frozenset()

    def recovered(self, records: list[Record]) -> float | None:
        """Seconds from the fault to the last affected entry handled after it (0 when
        nothing was affected); None while one of them was not handled again."""
        first: dict[str, float] = {}
        for record in records[self.seen:]:
            for name in (record.stream_id, record.event_id):
                first.setdefault(name, record.at)
        wanted = self.entries | self.events
        if not wanted.issubset(first):
            return None
        return max((max(0.0, first[name] - self.at) for name in wanted), default=0.0)


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault striking once ``at`` (a fraction) of the load was handled."""

    at: float
    strike: Callable[[Stage], Awaitable[Affected]]


@dataclass(frozen=True, slots=True)
class Outcome:
    """The count of one scenario (see the module docstring)."""

    sent: int
    wanted: int
    delivered: int
    duplicated: int
    recovered_s: float | None
    notes: list[str]

    @property
    def lost(self) -> int:
        """Confirmed events no handler saw."""
        return self.sent - self.delivered

    @property
    def complete(self) -> bool:
        """Every event of the load was confirmed (the deadline did not cut it short)."""
        return self.sent == self.wanted


@dataclass(slots=True)
class Stage:
    """The running scenario: its processes, its publisher and what they recorded."""

    slug: str
    bus: Bus
    client: AsyncClient
    url: str
    prefix: str
    events: int
    reclaim: tuple[float, float]  # consumer_min_idle_s, consumer_claim_interval_s
    workdir: Path
    deadline: float
    consumers: list[ConsumerProcess] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    started: int = 0

    @property
    def type_name(self) -> str:
        """The scenario's event type (and so its stream)."""
        return f"prove.{self.slug}"

    @property
    def key(self) -> str:
        """Where its consumers record their handler calls."""
        return handled_key(self.prefix, self.type_name)

    async def add_consumer(self) -> ConsumerProcess:
        """Start one more consumer process and wait until it reads."""
        self.started += 1  # before any await: concurrent starts get distinct names
        number = self.started
        consumer = await ConsumerProcess.start(
            url=self.url, prefix=self.prefix, type_name=self.type_name,
            name=f"{self.prefix}-{self.slug}-c{number}", min_idle_s=self.reclaim[0],
            claim_s=self.reclaim[1], workdir=self.workdir)
        self.consumers.append(consumer)
        await consumer.wait_ready(self.deadline)
        return consumer

    async def outstanding(self) -> tuple[int, frozenset[str]]:
        """How many handler calls were recorded, and the events confirmed but not yet
        handled."""
        records = await self.read()
        return len(records), frozenset(self.sent) - {record.event_id for record in records}

    async def seen(self) -> int:
        """How many handler calls were recorded so far."""
        return len(await self.read())

    async def pending_on(self, consumer: str) -> frozenset[str]:
        """Entry ids pending on ``consumer`` in the scenario's group."""
        rows = await self.client.xpending_range(
            self.bus.config.keys.stream(self.type_name), self.prefix, min="-", max="+",
            count=self.events * 2, consumername=consumer)
        return frozenset(text(row["message_id"]) for row in rows)

    async def run(self, faults: list[Fault]) -> Outcome:
        """Consumers up, the load published, each fault at its point, then the count.
        Its consumer processes are stopped whatever happens."""
        publisher: asyncio.Task[None] | None = None
        affected: list[Affected] = []
        notes: list[str] = []
        try:
            await asyncio.gather(*(self.add_consumer() for _ in range(CONSUMERS)))
            ids = [f"{self.prefix}-{self.slug}-{n}" for n in range(self.events)]
            publisher = asyncio.create_task(
                publish_all(self.bus, self.type_name, ids, self.sent, self.deadline))
            for fault in faults:
                if not await self._until_handled(math.ceil(fault.at * self.events)):
                    notes.append("the deadline passed before a fault's turn")
                    break
                affected.append(await fault.strike(self))
            with contextlib.suppress(TimeoutError):  # publish_all stops at the deadline
                await asyncio.wait_for(asyncio.shield(publisher), self._left() + _GRACE_S)
            records = await self._until_recovered(affected)
        finally:
            if publisher is not None:
                publisher.cancel()
            await asyncio.gather(*(consumer.stop() for consumer in self.consumers))
        return _count(self, records, affected, notes)

    def _left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    async def read(self) -> list[Record]:
        """The handler calls so far; a Redis error (a failover, our own CLIENT KILL) is
        retried until the deadline."""
        while True:
            try:
                return await read_records(self.client, self.key)
            except REDIS_ERRORS as exc:
                if not self._left():
                    raise translate_redis_error(exc, action="prove", url=self.url) from None
            await asyncio.sleep(_POLL_S)

    async def _until_handled(self, count: int) -> bool:
        while self._left():
            with contextlib.suppress(*REDIS_ERRORS):
                if await self.client.llen(self.key) >= count:
                    return True
            await asyncio.sleep(_POLL_S / 4)
        return False

    async def _until_recovered(self, affected: list[Affected]) -> list[Record]:
        """Until every confirmed event was handled and every fault recovered (bounded)."""
        while True:
            records = await self.read()
            handled = {record.event_id for record in records}
            if (handled.issuperset(self.sent)
                    and all(hit.recovered(records) is not None for hit in affected)):
                return records
            if not self._left():
                return records
            await asyncio.sleep(_POLL_S)


def _count(stage: Stage, records: list[Record], affected: list[Affected],
           notes: list[str]) -> Outcome:
    calls: dict[str, int] = dict.fromkeys(stage.sent, 0)
    for record in records:
        if record.event_id in calls:
            calls[record.event_id] += 1
    delivered = sum(1 for n in calls.values() if n)
    recovered = [hit.recovered(records) for hit in affected]
    worst = None if None in recovered else max(
        (r for r in recovered if r is not None), default=None)
    if len(stage.sent) < stage.events:
        notes.append(f"{stage.events - len(stage.sent)} publishes not confirmed by the "
                     "deadline")
    return Outcome(sent=len(stage.sent), wanted=stage.events, delivered=delivered,
                   duplicated=sum(n - 1 for n in calls.values() if n > 1),
                   recovered_s=worst, notes=[hit.note for hit in affected] + notes)
