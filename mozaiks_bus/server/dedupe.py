"""Event-id dedupe for ``POST /v1/events``: claim first, store, then confirm or release.

One Redis key per event id (``Keys.dedupe(id)``), holding the SHA-256 of the event's
canonical JSON (the object as received, keys sorted) with a state prefix:

* ``p:<digest>`` while the request that claimed it is storing the event. Taken with
  ``SET NX EX pending_s`` (a short TTL, so a request that dies mid-way frees the id);
* ``d:<digest>`` once the event is stored, for ``api_dedupe_window_s``.

A later request with the same id finds ``d:`` + the same digest: a duplicate (answered
202, stored once); ``p:`` + the same digest: the first copy is still being stored, so
it gets 503 + Retry-After (answering "duplicate" then could acknowledge an event whose
first copy fails); a different digest: 409. A request that fails after claiming
releases its own claims (compare-and-delete of its ``p:`` value). Every key is touched
alone (no multi-key command), so this works the same on Redis Cluster.

If the confirm itself fails (Redis gone right after the store), the ``p:`` claim
expires after ``pending_s`` and a retry stores the event again: at least once, never a
2xx for an event that was not stored.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from mozaiks_bus.connection import text
from mozaiks_bus.keys import Keys
from mozaiks_bus.redis_errors import redis_errors

__all__ = ["Claims", "DedupeClaims", "digest"]

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
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

    def __init__(self, client: Redis, keys: Keys, *, window_s: float, pending_s: float) -> None:
        self.client = client
        self.keys = keys
        self.window_s = max(1, int(window_s))
        self.pending_s = max(1, int(pending_s))

    async def claim(self, items: list[tuple[str, str]]) -> Claims:
        """Claim every ``(id, digest)``; raises TransportError when Redis cannot."""
        found = Claims()
        if not items:
            return found
        async with redis_errors("claim event ids"):
            pipe = self.client.pipeline(transaction=False)
            for event_id, item_digest in items:
                key = self.keys.dedupe(event_id)
                pipe.set(key, f"p:{item_digest}", nx=True, ex=self.pending_s)
                pipe.get(key)
            replies = await pipe.execute()
        for index, (event_id, item_digest) in enumerate(items):
            taken, current = replies[2 * index], replies[2 * index + 1]
            value = text(current)
            if taken:
                found.claimed.append((event_id, item_digest))
            elif value == f"d:{item_digest}":
                found.duplicates.append(event_id)
            elif value is None or value == f"p:{item_digest}":
                found.in_flight.append(event_id)  # None: it expired just now; retry
            else:
                found.conflicts.append(event_id)
        return found

    async def confirm(self, claimed: list[tuple[str, str]]) -> None:
        """Mark stored events as done for the whole window."""
        if not claimed:
            return
        async with redis_errors("confirm event ids"):
            pipe = self.client.pipeline(transaction=False)
            for event_id, item_digest in claimed:
                pipe.set(self.keys.dedupe(event_id), f"d:{item_digest}", ex=self.window_s)
            await pipe.execute()

    async def release(self, claimed: list[tuple[str, str]]) -> None:
        """Give back this request's pending claims (never another request's)."""
        if not claimed:
            return
        async with redis_errors("release event ids"):
            pipe = self.client.pipeline(transaction=False)
            for event_id, item_digest in claimed:
                pipe.eval(_RELEASE, 1, self.keys.dedupe(event_id), f"p:{item_digest}")
            await pipe.execute()
