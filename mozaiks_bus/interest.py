"""Declared interest: the event types that a durable consumer group or a sink on a
broker wants, which every publisher on that broker then stores.

**Guarantee.** Once ``await bus.start()`` of a process with ``@bus.consumer(pattern,
group=...)`` returned (for a sink: once ``mozaiks-bus worker`` or ``up`` said it is
ready), every publisher on the same broker and prefix (``publish``, ``emit``,
``POST /v1/events``, the compat ``event_bus``, ``mozaiks-bus publish``) stores each
event whose type the pattern matches on that type's durable stream, whatever its
routing table or a call's ``durable=False`` says, and with no configuration. One
exception: a type that a publisher routes ``local`` only never leaves that process
(a consumer of such a type is refused at start, naming the rule).

**Before any consumer.** Events published before any consumer group of their type
ever declared interest are not stored (they took their route: fan-out, ui): a bus does
not keep every event of every type on the chance that someone reads it later. Ask for
those with ``durable=True`` on the call or a ``[[routes]]`` rule with ``durable``.
A declaration lasts as long as the install (the hash below): a consumer that is down
still gets what was published meanwhile, as durable streams promise.

**Mechanism.**

* A consumer declares ``<pattern>\\t<group>`` in the hash ``Keys.interest()`` and then
  bumps ``Keys.interest_version()`` (``INCR``), both before its start returns.
* A publisher's sender starts every pipeline with ``GET`` of the version. When the
  reply differs from the version it knows, it reads the hash (``HKEYS``) and, before
  it confirms the batch, writes the durable part of every event of the batch that the
  new patterns want and that it had not stored. A publish that began after a
  declaration returned has its ``GET`` run after that ``INCR`` (one Redis orders them;
  on a cluster both keys share one slot), so it is stored. The cost is one ``GET`` per
  pipeline, and one more round trip when the version moved.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, NamedTuple

from mozaiks_bus.connection import AsyncClient, text
from mozaiks_bus.errors import InvalidEvent
from mozaiks_bus.keys import Keys
from mozaiks_bus.patterns import Pattern, compile_pattern

__all__ = ["Declaration", "Interest", "declarations", "declare", "forget"]

_UNKNOWN = object()  # no version read yet: the first pipeline reads the hash
_SEPARATOR = "\t"


class Declaration(NamedTuple):
    """One consumer group's interest in a pattern."""

    pattern: str
    group: str
    since: float  # when it was (last) declared, Unix seconds


class Interest:
    """A publisher's view of the declared interest on its broker (one per sender)."""

    def __init__(self) -> None:
        self.version: object = _UNKNOWN
        self._patterns: tuple[Pattern, ...] = ()
        self._wants: dict[str, bool] = {}

    def moved(self, version: object) -> bool:
        """Whether ``version`` (a ``GET`` reply) differs from the version known here."""
        return version != self.version

    def update(self, version: object, fields: Iterable[Any]) -> None:
        """Take the hash's fields (``HKEYS``) read after ``version``."""
        patterns = {text(field).split(_SEPARATOR, 1)[0] for field in fields}
        compiled = []
        for pattern in sorted(patterns):
            try:
                compiled.append(compile_pattern(pattern))
            except InvalidEvent:
                continue  # written by a newer version with other rules: not ours to judge
        self._patterns = tuple(compiled)
        self._wants = {}
        self.version = version

    def wants(self, type_name: str) -> bool:
        """Whether some declared pattern matches ``type_name``."""
        found = self._wants.get(type_name)
        if found is None:
            found = any(pattern.matches(type_name) for pattern in self._patterns)
            if len(self._wants) < 4096:
                self._wants[type_name] = found
        return found

    @property
    def patterns(self) -> list[str]:
        """The declared patterns, sorted."""
        return [pattern.text for pattern in self._patterns]


async def declare(client: AsyncClient, keys: Keys, pattern: str, group: str) -> None:
    """Declare that ``group`` consumes ``pattern``; every publisher stores it from now
    on (the version is bumped after the hash is written, see the module docstring)."""
    await client.hset(keys.interest(), f"{pattern}{_SEPARATOR}{group}", f"{time.time():.3f}")
    await client.incr(keys.interest_version())


async def declarations(client: AsyncClient, keys: Keys) -> list[Declaration]:
    """Every declaration on the broker, sorted by pattern then group."""
    found: dict[Any, Any] = await client.hgetall(keys.interest())
    result = []
    for field, since in found.items():
        pattern, _, group = text(field).partition(_SEPARATOR)
        result.append(Declaration(pattern, group, float(text(since))))
    return sorted(result)


async def forget(client: AsyncClient, keys: Keys, group: str) -> int:
    """Remove ``group``'s declarations (its consumers are gone for good); how many.

    Publishers stop storing a type once no declaration matches it any more."""
    found: dict[Any, Any] = await client.hgetall(keys.interest())
    fields = [field for field in found if text(field).partition(_SEPARATOR)[2] == group]
    if not fields:
        return 0
    removed = int(await client.hdel(keys.interest(), *fields))
    await client.incr(keys.interest_version())
    return removed
