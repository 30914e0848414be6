"""Running a durable handler on one entry and settling what it did.

Return = ack (batched, or with ``guard``/``delivery.tx`` in one transaction); raise =
retry after the spec's backoff (the entry stays held) or, at ``max_deliveries`` or on
:class:`~mozaiks_bus.errors.Unprocessable`, dead letter; an entry delivered more often
than ``max_deliveries`` (one that kills its process) is dead-lettered without calling
the handler; a malformed entry is dead-lettered; a trimmed one is counted as
``lost_pending`` and acked. See :mod:`.consumer` for the whole contract.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any

from mozaiks_bus import tracing
from mozaiks_bus.connection import AsyncClient
from mozaiks_bus.connection.redis_errors import REDIS_ERRORS
from mozaiks_bus.durable._permits import Permits
from mozaiks_bus.durable.held import HeldEntries
from mozaiks_bus.durable.retries import RetryTimer
from mozaiks_bus.durable.settle import Entry, Settler
from mozaiks_bus.durable.spec import ConsumerHandler, ConsumerSpec, Delivery
from mozaiks_bus.durable.streams import decode_entry
from mozaiks_bus.errors import InvalidEvent, Unprocessable
from mozaiks_bus.event import Event
from mozaiks_bus.local import handler_name, is_async_callable
from mozaiks_bus.stats import BusStats

__all__ = ["EntryHandler"]

logger = logging.getLogger("mozaiks_bus.durable.consumer")


class EntryHandler:
    """Handles the entries of one group consumer (see the module docstring)."""

    def __init__(self, spec: ConsumerSpec, *, consumer: str, client: AsyncClient,
                 stats: BusStats, settle: Settler, retries: RetryTimer, held: HeldEntries,
                 permits: Permits) -> None:
        self._spec = spec
        self._consumer = consumer
        self._client = client
        self._stats = stats
        self._settle = settle
        self._retries = retries
        self._held = held
        self._permits = permits
        self._wants_delivery = spec.wants_delivery
        self._is_async = is_async_callable(spec.handler)

    async def handle(self, entry: Entry, deliveries: int, *, already_done: bool) -> None:
        """Run the handler on ``entry`` (its ``deliveries``-th delivery) and settle the
        outcome; the entry is released unless it stays held (a retry, a batched ack)."""
        keep = False
        try:
            keep = await self._outcome(entry, deliveries, already_done)
        except REDIS_ERRORS as exc:
            logger.warning("could not settle %s %s (%s): it stays pending",
                           entry.key, entry.sid, exc)
        finally:
            if not keep:
                self._held.release(entry.key, entry.sid)
            self._permits.give()

    async def _outcome(self, entry: Entry, deliveries: int, already_done: bool) -> bool:
        """Returns True when the entry stays held (a retry is scheduled, or its ack is
        batched: the batcher releases it)."""
        key, sid, fields = entry.key, entry.sid, entry.fields
        if not fields:
            self._stats.incr("lost_pending")
            logger.error("%s %s was trimmed or deleted before %s acked it: lost",
                         key, sid, self._spec.group)
            await self._settle.ack_at_once(key, sid)
            return False
        try:
            event, target = decode_entry(fields)
        except InvalidEvent as exc:
            await self._settle.dead_letter(entry, f"malformed entry: {exc}", deliveries)
            return False
        if (target is not None and target != self._spec.group) or already_done:
            if already_done:
                self._stats.incr("duplicates")
            await self._settle.ack_at_once(key, sid)
            return False
        if deliveries > self._spec.max_deliveries:
            await self._settle.dead_letter(
                entry, "delivered too often without an ack (crashing handler?)", deliveries
            )
            return False
        delivery = (Delivery(event, entry.base_type, sid, self._spec.group,
                             self._consumer, deliveries, self._client, stream=entry.type_name)
                    if self._wants_delivery else None)
        try:
            await self._call(event, delivery)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001  # the contract: raise = retry / dead letter
            return await self._failed(entry, deliveries, exc)
        self._stats.incr("consumed")
        tx = None if delivery is None else delivery._tx
        if not self._spec.guard and tx is None:
            self._settle.ack_later(entry.key, entry.sid)
            return True
        await self._settle.ack(entry, event.id, [] if delivery is None else delivery.queued(),
                               guard=self._spec.guard)
        return False

    async def _call(self, event: Event, delivery: Delivery | None) -> None:
        args: tuple[Any, ...] = (event,) if delivery is None else (event, delivery)
        if not tracing.active():  # no span machinery at all on the hot path
            await _invoke(self._spec.handler, self._is_async, args)
            return
        with tracing.span("consumer", f"consume {event.type}", event.type, event.id,
                          event.traceparent):
            await _invoke(self._spec.handler, self._is_async, args)

    async def _failed(self, entry: Entry, deliveries: int, exc: Exception) -> bool:
        self._stats.incr("consume_failed")
        error = f"{type(exc).__name__}: {exc}"
        name = handler_name(self._spec.handler)
        if deliveries >= self._spec.max_deliveries or isinstance(exc, Unprocessable):
            logger.error("%s failed %s %s on delivery %d (%s): dead letter",
                         name, entry.type_name, entry.sid, deliveries, error)
            await self._settle.dead_letter(entry, error, deliveries)
            return False
        delay = self._spec.retry.delay(deliveries)
        logger.warning("%s failed %s %s (delivery %d, %s): retry in %.2fs",
                       name, entry.type_name, entry.sid, deliveries, error, delay)
        self._retries.schedule(entry, delay)
        self._stats.incr("retried")
        return True


async def _invoke(handler: ConsumerHandler, is_async: bool, args: tuple[Any, ...]) -> None:
    """Call a durable handler: async ones on the loop, sync ones in a worker thread."""
    if is_async:
        await handler(*args)
        return
    result = await asyncio.to_thread(handler, *args)
    if inspect.isawaitable(result):
        await result
