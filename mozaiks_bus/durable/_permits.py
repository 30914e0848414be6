"""Permits that bound how many entries one consumer holds (a batching semaphore)."""

from __future__ import annotations

import asyncio

__all__ = ["Permits"]


class Permits:
    """A counting semaphore that can hand out several permits at once (one loop).

    Waiters wake when at least ``wake_at`` permits are free, so a reader that wants a
    batch is not woken for every single permit returned. While ``claiming`` is non-zero
    (a reclaim walk runs), readers wait: abandoned entries go before new ones."""

    def __init__(self, size: int) -> None:
        self.free = size
        self.wake_at = 1
        self.claiming = 0
        self._freed = asyncio.Event()

    async def _wait(self, at_least: int = 1, *, reader: bool = False) -> None:
        while self.free < at_least or (reader and self.claiming):
            self._freed.clear()
            await self._freed.wait()

    def wake(self) -> None:
        """Let every waiter check again (a reclaim walk ended)."""
        self._freed.set()

    async def take(self, most: int) -> int:
        """Wait for a permit, then take up to ``most``."""
        await self._wait()
        taken = min(self.free, most)
        self.free -= taken
        return taken

    async def available(self, at_least: int = 1, *, reader: bool = False) -> int:
        """Wait until ``at_least`` permits are free (a ``reader`` also until no reclaim
        walk runs); returns how many (takes none)."""
        await self._wait(at_least, reader=reader)
        return self.free

    def force_take(self, count: int) -> None:
        """Take ``count`` permits even if fewer are free (a reader that already read)."""
        self.free -= count

    def try_take(self, most: int) -> int:
        """Take up to ``most`` permits without waiting; returns how many were taken."""
        taken = max(0, min(self.free, most))
        self.free -= taken
        return taken

    def give(self, count: int = 1) -> None:
        """Return permits."""
        self.free += count
        if self.free >= self.wake_at:
            self._freed.set()
