"""Thread-safe counters for the bus, read as a plain dict snapshot.

Every counter is declared in :data:`COUNTERS` with what it counts; counting an
undeclared name raises ``KeyError`` at once, so a typo fails in the first test that
reaches it instead of quietly starting a new counter.
"""

from __future__ import annotations

import threading
from collections import Counter

__all__ = ["COUNTERS", "BusStats"]

COUNTERS: dict[str, str] = {
    "published": "events accepted by emit()/publish()",
    "delivered": "local handler calls that returned normally",
    "failed": "local handler calls that raised",
    "dropped_local": "async handler deliveries dropped by a full subscriber queue",
    "received_remote": "events that arrived from other processes",
    "sent_remote": "events the transport confirmed it sent or stored",
    "dropped_remote": "emit() events the transport could not send (buffer full, broker down)",
    "reconnects": "fan-out listener reconnects",
    "consumed": "durable handler calls that returned normally",
    "consume_failed": "durable handler calls that raised",
    "acked": "durable entries acknowledged",
    "retried": "durable deliveries scheduled for a retry",
    "dead_lettered": "durable entries moved to a dead-letter stream",
    "duplicates": "redeliveries of an id a guarded group had finished (acked, not handled)",
    "reclaimed": "entries claimed from a dead consumer",
    "groups_recreated": "consumer groups recreated after they vanished (Redis flushed?)",
    "lost_pending": "pending entries trimmed or deleted before they were acked",
    "lost_trimmed": "unread entries trimmed by the hard length cap",
}


class BusStats:
    """Counters updated from any thread; :meth:`snapshot` returns a consistent copy."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._by_type: Counter[str] = Counter()

    def incr(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to counter ``name`` (a :data:`COUNTERS` key, else KeyError)."""
        if name not in COUNTERS:
            raise KeyError(f"undeclared stats counter {name!r}: declare it in stats.COUNTERS")
        with self._lock:
            self._counts[name] += amount

    def published(self, type_name: str) -> None:
        """Count one accepted event of ``type_name``."""
        with self._lock:
            self._counts["published"] += 1
            self._by_type[type_name] += 1

    def get(self, name: str) -> int:
        """The current value of counter ``name``."""
        with self._lock:
            return self._counts[name]

    def snapshot(self) -> dict[str, object]:
        """Every counter (zeros included) plus ``by_type``."""
        with self._lock:
            out: dict[str, object] = {name: self._counts[name] for name in COUNTERS}
            out["by_type"] = dict(self._by_type)
        return out

    def reset(self) -> None:
        """Set every counter back to zero."""
        with self._lock:
            self._counts.clear()
            self._by_type.clear()
