"""Event-id dedupe for ``POST /v1/events``: claim first, then store and mark (one MULTI),
or release.

One Redis key per event id (``Keys.dedupe(id)``), holding the SHA-256 of the event's
canonical JSON (the object as received, keys sorted) with a state prefix:

* ``p:<digest>`` while the request that claimed it is storing the event. Taken with
  ``SET NX EX pending_s`` (a short TTL, so a request that dies mid-way frees the id);
* ``d:<digest>`` once the event is stored, for ``api_dedupe_window_s``. The mark is
  written in the MULTI/EXEC that stores the events (:meth:`DedupeClaims.marks`,
  ``Bus.publish_events(marks=...)``): stored and marked together, or neither.

A later request with the same id finds ``d:`` + the same digest: a duplicate (answered
202, stored once); ``p:`` + the same digest: the first copy is still being stored, so
it gets 503 + Retry-After (answering "duplicate" then could acknowledge an event whose
first copy fails); a different digest: 409. A request that fails after claiming
releases its own claims (compare-and-delete of its ``p:`` value). Every key is touched
alone (no multi-key command), so this works the same on Redis Cluster.

If the store fails (or its answer is lost), the request releases its claims, or they
expire after ``pending_s``; a retry then stores the event: at least once, never a 2xx
for an event that was not stored. (Since the mark rides with the store, a stored event
is never left unmarked, as it could be when the confirm was a separate round trip.)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from mozaiks_bus.connection import AsyncClient, text
from mozaiks_bus.connection.redis_errors import redis_errors
from mozaiks_bus.connection.transactions import CLAIM_IF_EMPTY
from mozaiks_bus.errors import BrokerUnavailable
from mozaiks_bus.keys import KeyMark, Keys

__all__ = ["Claims", "DedupeClaims", "digest"]

# This request's own claim, pending or marked done: a MULTI does not roll back, so a
# store that failed inside EXEC (WRONGTYPE) may have written the "done" mark.
_RELEASE = """
local value = redis.call('GET', KEYS[1])
if value == ARGV[1] or value == ARGV[2] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def digest(item: Any) -> str:
    """SHA-256 of the canonical JSON of one event object as received."""
    canonical = json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


@dataclass
class Claims:
    """What one claim round found, event ids in request order."""

    claimed: list[tuple[str, str]] = field(default_factory=list)  # (id, digest)
    duplicates: list[str] = field(default_factory=list)
    in_flight: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)


class DedupeClaims:
    """Claims on event ids in Redis (see the module docstring)."""

    def __init__(self, client: AsyncClient, keys: Keys, *, window_s: float, pending_s: float,
                 send: Callable[[tuple[Any, ...]], Awaitable[Any]]) -> None:
        self.client = client
        self._send = send
        self.keys = keys
        self.window_s = max(1, int(window_s))
        self.pending_s = max(1, int(pending_s))

    async def claim(self, items: list[tuple[str, str]]) -> Claims:
        """Claim every ``(id, digest)``; raises TransportError when Redis cannot.

        One script call per id (``SET NX EX``, else ``GET``), each through the bus's
        batching sender: the claims of concurrent requests share one round trip."""
        found = Claims()
        if not items:
            return found
        try:
            replies = await asyncio.gather(*(
                self._send(("EVAL", CLAIM_IF_EMPTY, 1, self.keys.dedupe(event_id),
                            f"p:{item_digest}", self.pending_s))
                for event_id, item_digest in items))
        except TimeoutError:
            raise BrokerUnavailable("Redis did not answer the dedupe claim in time") from None
        for (event_id, item_digest), reply in zip(items, replies, strict=True):
            if reply == 1:
                found.claimed.append((event_id, item_digest))
                continue
            value = text(reply)
            if value == f"d:{item_digest}":
                found.duplicates.append(event_id)
            elif value is None or value == f"p:{item_digest}":
                found.in_flight.append(event_id)  # None: it expired just now; retry
            else:
                found.conflicts.append(event_id)
        return found

    def marks(self, claimed: list[tuple[str, str]]) -> list[KeyMark]:
        """The "done" marks of ``claimed``, for the window: written with the store."""
        return [KeyMark(self.keys.dedupe(event_id), f"d:{item_digest}", self.window_s)
                for event_id, item_digest in claimed]

    async def release(self, claimed: list[tuple[str, str]]) -> None:
        """Give back this request's claims after a failed store (never another
        request's: only a value with this request's digest is deleted)."""
        if not claimed:
            return
        async with redis_errors("release event ids"):
            pipe = self.client.pipeline(transaction=False)
            for event_id, item_digest in claimed:
                pipe.eval(_RELEASE, 1, self.keys.dedupe(event_id), f"p:{item_digest}",
                          f"d:{item_digest}")
            await pipe.execute()
