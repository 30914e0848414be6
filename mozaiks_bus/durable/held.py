"""What one group consumer holds: the entries it handles, waits to handle or retries.

A held entry's claim is kept alive (the janitor touches it), a reclaim never takes it
back from this consumer, and it is released once settled (acked, dead-lettered) or
handed back. One object owns the set; the reader, the handlers, the retry timer, the
settler, the janitor and the reclaimer call its methods.
"""

from __future__ import annotations

__all__ = ["HeldEntries"]


class HeldEntries:
    """Entry ids held per stream key (one event loop; no locking)."""

    def __init__(self) -> None:
        self._ids: dict[str, set[str]] = {}

    def add(self, key: str, sid: str) -> None:
        """Hold ``sid`` of the stream ``key``."""
        self._ids.setdefault(key, set()).add(sid)

    def release(self, key: str, *sids: str) -> None:
        """Stop holding ``sids`` (unknown ones are ignored)."""
        held = self._ids.get(key)
        if held is not None:
            held.difference_update(sids)

    def holds(self, key: str, sid: str) -> bool:
        """Whether ``sid`` of ``key`` is held."""
        return sid in self._ids.get(key, ())

    def count(self, key: str) -> int:
        """How many entries of ``key`` are held."""
        return len(self._ids.get(key, ()))

    def snapshot(self) -> list[tuple[str, list[str]]]:
        """Every stream key with its held ids, sorted (for a heartbeat)."""
        return [(key, sorted(ids)) for key, ids in list(self._ids.items()) if ids]
