"""Keeps a sender's declared interest current, and stores what a batch missed.

Every pipeline the sender writes starts with the interest probe (``GET`` of the
version, :meth:`CommandBuilder.interest_probe`). :class:`InterestCatchUp` reads its
reply: when the version moved, it re-reads the declared patterns and writes the durable
part of every event of that batch that they now want and that the batch did not store,
before the sender confirms the batch (the guarantee of :mod:`mozaiks_bus.interest`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from mozaiks_bus.connection.redis_errors import REDIS_ERRORS
from mozaiks_bus.transports.redis.commands import CommandBuilder
from mozaiks_bus.transports.redis.items import AtomicItem, CommandItem, EventItem, Outgoing

__all__ = ["InterestCatchUp", "Missed"]

logger = logging.getLogger("mozaiks_bus.redis")
Missed = list[tuple[EventItem, Outgoing]]
"""Events a batch sent without their durable part, each with the item that holds it."""


class InterestCatchUp:
    """Follows the interest version of one sender's batches (see the module docstring)."""

    def __init__(self, builder: CommandBuilder,
                 execute: Callable[[list[tuple[Any, ...]]], Awaitable[list[Any]]]) -> None:
        self._builder = builder
        self._execute = execute
        self._key = builder.keys.interest()

    async def missed_by(self, items: list[Outgoing], firsts: list[int],
                        replies: list[Any]) -> Missed:
        """Given a batch Redis took (``replies[0]`` answers the probe): the events it
        sent without their durable part that the declared interest, re-read when its
        version moved, now wants."""
        interest = self._builder.interest
        version = replies[0]
        if not interest.moved(version):
            return []
        try:
            fields = (await self._execute([("HKEYS", self._key)]))[0]
        except REDIS_ERRORS as exc:  # read again after the next batch's probe
            logger.warning("could not read the declared interest: %s", exc)
            return []
        interest.update(version, fields if isinstance(fields, list | set | tuple) else ())
        return [(event, item) for item, first in zip(items, firsts, strict=True)
                for event in _sent_events(item, replies[first])
                if not event.stored and interest.wants(event.event.type)]

    async def store(self, missed: Missed) -> None:
        """Write the durable part of ``missed`` (raises a Redis error if that failed)."""
        commands: list[tuple[Any, ...]] = []
        for event, _ in missed:
            self._builder.add_stream_entry(commands, event)
        await self._execute(commands)
        for event, _ in missed:
            event.stored = True


def _sent_events(item: Outgoing, reply: Any) -> Iterator[EventItem]:
    """The events ``item`` wrote (a store-if-new script: those it stored now)."""
    if isinstance(item, EventItem):
        yield item
    elif isinstance(item, AtomicItem):
        yield from item.members
    elif isinstance(item, CommandItem) and isinstance(reply, list):
        yield from (event for event, found in zip(item.stores, reply, strict=False)
                    if found == 1)
