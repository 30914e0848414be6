"""One WebSocket client's view of one chat: history since its last id, then live.

The queue is bounded: a client that stops reading overflows it, and its next read
raises :class:`SlowConsumer` (the socket is then closed; other clients are unaffected).
Live frames at or below the last frame replayed from history are skipped, so history and
live splice with no gap and no duplicate. When the live link was lost meanwhile
(:meth:`ChatStream.open_gap`), live frames are held back until the frames missed are
filled in from history (:meth:`ChatStream.fill_gap`), so the client still reads every
frame once, in order, or a ``chat.resync_required`` notice where history no longer
reaches back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from mozaiks_bus.errors import MozaiksBusError
from mozaiks_bus.frames import FrameId, frame_id_of, frame_key, with_id

__all__ = ["ChatStream", "SlowConsumer"]


class SlowConsumer(MozaiksBusError):
    """A WebSocket client stopped reading and its bounded queue overflowed."""


class ChatStream:
    """Frames of one chat for one client; iterate it, close it when done."""

    def __init__(self, chat_id: str, maxsize: int,
                 release: Callable[[ChatStream], Awaitable[None]]) -> None:
        self.chat_id = chat_id
        self._release = release
        self._queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize)
        self._floor: FrameId = (0, 0)  # live frames at or below were replayed
        self.last_id: str | None = None  # the newest frame queued (or skipped) so far
        self._newest: FrameId = (0, 0)  # its key: live frames at or below are duplicates
        self._gap: list[tuple[str, str]] | None = None  # live frames held while a gap is open
        self.overflowed = False

    def push(self, frame_id: str, frame: str) -> None:
        """A live frame (called on the bus loop)."""
        if self._gap is not None:
            self._gap.append((frame_id, frame))
            return
        key = frame_key(frame_id)
        if key <= self._floor or key <= self._newest or self.overflowed:
            return
        self._mark(frame_id)
        self._put(with_id(frame, frame_id))

    def _mark(self, frame_id: str) -> None:
        key = frame_key(frame_id)
        if key > self._newest:
            self._newest, self.last_id = key, frame_id

    def _put(self, item: str) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.overflowed = True
            self._queue = asyncio.Queue(1)
            self._queue.put_nowait(None)  # wakes the reader, which raises SlowConsumer

    def skip_through(self, frame_id: str) -> None:
        """Ignore live frames up to and including ``frame_id`` (a client starting live)."""
        self._floor = max(self._floor, frame_key(frame_id))
        self._mark(frame_id)

    def replay(self, frames: list[tuple[str, str]], *, notice: str | None = None) -> None:
        """History frames (after an optional notice of the bus's own, such as
        ``chat.resync_required``), before any live frame is read."""
        buffered: list[str | None] = []
        while not self._queue.empty():
            buffered.append(self._queue.get_nowait())
        # room for the history on top of the live bound
        self._queue = asyncio.Queue(self._queue.maxsize + len(frames) + 1)
        if notice is not None:
            self._queue.put_nowait(notice)
        for frame_id, frame in frames:
            self._queue.put_nowait(with_id(frame, frame_id))
        if frames:
            self._floor = frame_key(frames[-1][0])
            self._mark(frames[-1][0])
        for item in buffered:  # live frames that arrived while history was read
            if item is not None and frame_key(frame_id_of(item)) > self._floor:
                self._queue.put_nowait(item)

    def open_gap(self) -> str:
        """The live link was lost: hold live frames back until :meth:`fill_gap`; returns
        the id after which frames may be missing (``"0"``: before any frame)."""
        if self._gap is None:
            self._gap = []
        return self.last_id or "0"

    def fill_gap(self, missed: list[tuple[str, str]], notice: str | None = None) -> None:
        """Queue the frames missed (from history, oldest first; after ``notice`` when
        history no longer reaches back), then the live frames held meanwhile."""
        held, self._gap = self._gap or [], None
        if notice is not None and not self.overflowed:
            self._put(notice)
        for frame_id, frame in [*missed, *held]:  # what both hold is queued once
            self.push(frame_id, frame)

    def __aiter__(self) -> AsyncIterator[str]:
        return self

    async def __anext__(self) -> str:
        item = await self._queue.get()
        if item is None or self.overflowed:
            raise SlowConsumer(f"client of chat {self.chat_id} stopped reading")
        return item

    async def close(self) -> None:
        """Stop receiving (releases the chat's subscription when it was the last)."""
        await self._release(self)

    async def __aenter__(self) -> ChatStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
