"""Thread-safe counters for the bus, read as a plain dict snapshot."""

from __future__ import annotations

import threading
from collections import Counter

__all__ = ["BusStats"]

_COUNTERS = (
    "published",  # events accepted by emit()/publish()
    "delivered",  # local handler calls that returned normally
    "failed",  # local handler calls that raised
    "dropped_local",  # async handler deliveries dropped by a full subscriber queue
    "received_remote",  # events that arrived from other processes
    "sent_remote",  # events the transport confirmed it sent or stored
    "dropped_remote",  # emit() events the transport could not send (buffer full, broker down)
    "reconnects",  # fan-out listener reconnects
)


class BusStats:
    """Counters updated from any thread; :meth:`snapshot` returns a consistent copy."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._by_type: Counter[str] = Counter()

    def incr(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to counter ``name``."""
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
            out: dict[str, object] = {name: self._counts[name] for name in _COUNTERS}
            out.update({k: v for k, v in self._counts.items() if k not in out})
            out["by_type"] = dict(self._by_type)
        return out

    def reset(self) -> None:
        """Set every counter back to zero."""
        with self._lock:
            self._counts.clear()
            self._by_type.clear()
