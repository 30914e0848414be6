"""One batch of the sender: its commands, one round trip, and every item's outcome.

* An item that cannot even become commands fails alone and is never retried.
* Redis took the batch: every confirmed item gets its first reply. Events that a
  consumer group declared interest in since the last batch and that went out without
  their durable part get it now, before anyone is told (:mod:`.catch_up`).
* Redis did not take it: confirmed items fail; emitted events that were to be stored go
  back to the front of the sender's buffer (at least once; the event id dedupes), and
  emitted fan-out-only ones are dropped and counted (``dropped_remote``): fan-out is at
  most once, and Redis may have published them before the link failed.
* A cluster node lost after the write (:class:`PartialBatch`): the items with a
  command there fail as above, the others succeed.
* Confirmed items that asked for ``min_replicas`` make the batch end with ``WAIT``
  (on a cluster, on every primary the batch wrote to; the fewest replicas count). An
  item whose count was not reached within :data:`REPLICA_WAIT_SHARE` of
  ``publish_timeout_s`` fails with :class:`PublishFailed` naming the replicas reached:
  it is stored on the primary, but a failover may lose it (a retry with the same id
  is safe: at least once).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from mozaiks_bus.connection.redis_errors import REDIS_ERRORS, translate_redis_error
from mozaiks_bus.errors import PublishFailed
from mozaiks_bus.routing import Scope
from mozaiks_bus.stats import BusStats
from mozaiks_bus.transports.redis.catch_up import InterestCatchUp, Missed
from mozaiks_bus.transports.redis.commands import CommandBuilder, PartialBatch
from mozaiks_bus.transports.redis.items import EventItem, Outgoing

__all__ = ["REPLICA_WAIT_SHARE", "BatchWriter"]

logger = logging.getLogger("mozaiks_bus.redis")
Execute = Callable[[list[tuple[Any, ...]]], Awaitable[list[Any]]]
REPLICA_WAIT_SHARE = 0.8  # of publish_timeout_s: WAIT answers before the caller's deadline


class BatchWriter:
    """Writes the sender's batches and settles each item (see the module docstring)."""

    def __init__(self, builder: CommandBuilder, execute: Execute, *, stats: BusStats,
                 url: str, requeue: Callable[[list[EventItem]], int],
                 publish_timeout_s: float) -> None:
        self._builder = builder
        self._wait_ms = max(1, int(publish_timeout_s * REPLICA_WAIT_SHARE * 1000))
        self._execute = execute
        self._stats = stats
        self._url = url
        self._requeue = requeue  # the sender's: emitted events back to its buffer
        self._catch_up = InterestCatchUp(builder, execute)

    async def write(self, batch: list[Outgoing]) -> Exception | None:
        """Send one batch; returns the error if Redis did not take all of it."""
        commands: list[tuple[Any, ...]] = [self._builder.interest_probe()]
        firsts: list[int] = []
        kept: list[Outgoing] = []
        for item in batch:
            start = len(commands)
            try:
                self._builder.add(commands, item)
            except Exception as exc:  # noqa: BLE001  # one bad item must not stop the sender
                del commands[start:]
                self.reject(item, exc)
                continue
            firsts.append(start)
            kept.append(item)
        if not kept:
            return None
        replicas = max(item.min_replicas for item in kept)
        if replicas:
            commands.append(("WAIT", replicas, self._wait_ms))
        try:
            replies = await self._execute(commands)
        except PartialBatch as partial:
            return self._settle_partial(kept, firsts, partial, len(commands))
        except REDIS_ERRORS as exc:
            return self._fail(kept, self._translate(exc))
        error: Exception | None = None
        missed = await self._catch_up.missed_by(kept, firsts, replies)
        if missed:
            try:
                await self._catch_up.store(missed)
            except REDIS_ERRORS as exc:
                error = self._fail_missed(missed, self._translate(exc))
        if replicas:
            self._check_replicas(kept, replies[-1])
        self._succeed(kept, firsts, replies)
        return error

    def _check_replicas(self, items: list[Outgoing], reached: Any) -> None:
        """Fail the items that asked for more replicas than ``WAIT`` reported."""
        count = reached if isinstance(reached, int) else 0
        for item in items:
            if item.min_replicas > count and item.future is not None \
                    and not item.future.done():
                item.future.set_exception(PublishFailed(
                    f"stored on the primary, but {count} of the {item.min_replicas} "
                    f"replicas asked for had it within {self._wait_ms / 1000:g}s "
                    "(min_replicas): a failover could lose it; publishing it again with "
                    "the same id is safe"))

    def reject(self, item: Outgoing, exc: Exception) -> None:
        """An item that cannot even be turned into commands: fail it, never retry it."""
        logger.error("could not send %s: %s",
                     item.event.id if isinstance(item, EventItem) else type(item).__name__,
                     exc)
        if item.future is not None and not item.future.done():
            item.future.set_exception(exc)
        else:
            self._stats.incr("dropped_remote")

    def _translate(self, exc: BaseException) -> Exception:
        return translate_redis_error(exc, action="publish", url=self._url)

    def _succeed(self, items: list[Outgoing], firsts: list[int], replies: list[Any]) -> None:
        self._stats.incr("sent_remote", len(items))
        for item, first in zip(items, firsts, strict=True):
            if item.future is not None and not item.future.done():
                item.future.set_result(replies[first] if first < len(replies) else None)

    def _fail(self, items: list[Outgoing], error: Exception) -> Exception:
        """Redis did not take ``items``: fail the confirmed, re-queue emitted events that
        were to be stored, drop (and count) emitted fan-out-only ones."""
        self._builder.forget_index()  # Redis may have lost it (restart without AOF)
        emitted = [item for item in items if item.future is None and isinstance(item, EventItem)]
        kept = [item for item in emitted if item.stored]
        lost = len(emitted) - len(kept)
        if lost:
            self._stats.incr("dropped_remote", lost)
        lost += self._requeue(kept)
        logger.warning("Redis did not take %d events (%d dropped: fan-out only, or no room "
                       "to re-queue): %s", len(items), lost, error)
        for item in items:
            if item.future is not None and not item.future.done():
                item.future.set_exception(error)
        return error

    def _fail_missed(self, missed: Missed, error: Exception) -> Exception:
        """The durable part of ``missed`` could not be written: their confirmed items
        fail; emitted ones go back to the buffer for their durable part alone."""
        logger.warning("Redis did not store %d events of a declared interest: %s",
                       len(missed), error)
        self._requeue([EventItem(event.event, Scope.DURABLE, event.payload)
                       for event, owner in missed if owner.future is None])
        for _, owner in missed:
            if owner.future is not None and not owner.future.done():
                owner.future.set_exception(error)
        return error

    def _settle_partial(self, items: list[Outgoing], firsts: list[int], partial: PartialBatch,
                        total: int) -> Exception:
        """Some items' commands failed (a cluster node lost): those fail as a whole
        batch would; the others succeeded."""
        done, failed, error = partial.split(items, firsts, total)
        self._succeed([item for item, _ in done], [first for _, first in done], partial.replies)
        if not failed:
            return partial
        return self._fail(failed, self._translate(error) if isinstance(error, REDIS_ERRORS)
                          else partial)
