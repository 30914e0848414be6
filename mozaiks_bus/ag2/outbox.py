"""The frames of one AG2 run on their way to ``bus.ui``: in order, bounded, outage-proof.

Contract
--------
* :meth:`FrameOutbox.put` queues a payload; one task sends them with ``bus.ui.send``
  one after the other, in order. At most ``max_pending`` wait: a producer that gets
  ahead of Redis waits in :meth:`put` (the run's own event queue holds the rest).
* A send that fails because Redis is away (:class:`~mozaiks_bus.errors.TransportError`)
  is retried with backoff; frames wait meanwhile and go out, in order, once Redis is
  back. Only when one outage lasts ``outage_s`` (or a send fails otherwise: the bus is
  closed, the chat id is invalid) does the outbox **give up**: :attr:`error` holds the
  failure, every frame still queued or put later is dropped (counted in
  :attr:`dropped`) and its ``on_drop`` is awaited, so the producer never blocks on a
  UI that is gone. Nothing raises out of the outbox.
* :func:`retry_transport` is the same outage rule for one call (the run's final
  durable events).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from mozaiks_bus.bus import Bus
from mozaiks_bus.errors import ConfigError, TransportError
from mozaiks_bus.retry import Backoff

__all__ = ["FrameOutbox", "retry_transport"]

logger = logging.getLogger("mozaiks_bus.ag2")
T = TypeVar("T")
OnDrop = Callable[[], Awaitable[None]]


async def retry_transport(call: Callable[[], Awaitable[T]], *, outage_s: float,
                          what: str) -> T:
    """``await call()``, retried with backoff while it raises TransportError, until the
    failures have lasted ``outage_s``; then the last error is raised."""
    loop = asyncio.get_running_loop()
    backoff = Backoff(0.05, 2.0)
    first_failure: float | None = None
    while True:
        try:
            result = await call()
        except TransportError as exc:
            now = loop.time()
            if first_failure is None:
                first_failure = now
                logger.warning("%s: Redis is away (%s); retrying for up to %.0f s", what, exc,
                               outage_s)
            if now - first_failure >= outage_s:
                raise
            await backoff.sleep()
            continue
        if first_failure is not None:
            logger.info("%s: sent after %.1f s of outage", what, loop.time() - first_failure)
        return result


class FrameOutbox:
    """See the module docstring. ``start()``, ``put()`` each frame, then ``close()``."""

    def __init__(self, bus: Bus, chat_id: str, *, max_pending: int, outage_s: float) -> None:
        if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:
            raise ConfigError("max_pending_frames", "must be an integer of at least 1")
        if isinstance(outage_s, bool) or not isinstance(outage_s, int | float) or outage_s < 0:
            raise ConfigError("ui_outage_s", "must be a number of seconds, at least 0")
        self.bus = bus
        self.chat_id = chat_id
        self.outage_s = outage_s
        self.sent: list[str] = []  # the ui ids, in order
        self.dropped = 0
        self.error: BaseException | None = None
        self._queue: asyncio.Queue[tuple[dict[str, Any], OnDrop | None] | None] = \
            asyncio.Queue(max_pending)
        self._task: asyncio.Task[None] | None = None

    @property
    def gave_up(self) -> bool:
        """Whether the UI was given up (see :attr:`error`)."""
        return self.error is not None

    def start(self) -> None:
        """Start the sending task (on the running loop)."""
        self._task = asyncio.create_task(self._run(), name=f"ag2-frames:{self.chat_id}")

    async def put(self, payload: dict[str, Any], on_drop: OnDrop | None = None) -> None:
        """Queue ``payload`` (waits while ``max_pending`` frames wait); once the outbox
        gave up, drop it at once (``on_drop`` awaited)."""
        if self.gave_up:
            await self._drop(on_drop)
            return
        await self._queue.put((payload, on_drop))

    async def close(self) -> None:
        """Wait until every queued frame was sent or dropped."""
        await self._queue.put(None)
        if self._task is not None:
            await self._task

    async def cancel(self) -> None:
        """Stop at once (the caller was cancelled): queued frames are not sent."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while (item := await self._queue.get()) is not None:
            payload, on_drop = item
            if self.gave_up:
                await self._drop(on_drop)
                continue
            try:
                self.sent.append(await retry_transport(
                    functools.partial(self.bus.ui.send, self.chat_id, payload),
                    outage_s=self.outage_s, what=f"chat {self.chat_id} frames"))
            except Exception as exc:  # noqa: BLE001  # the contract: never raises, gives up
                self.error = exc
                logger.warning("chat %s: the UI is given up (%s: %s); the run's later frames "
                               "are dropped", self.chat_id, type(exc).__name__, exc)
                await self._drop(on_drop)

    async def _drop(self, on_drop: OnDrop | None) -> None:
        self.dropped += 1
        if on_drop is not None:
            try:
                await on_drop()
            except Exception as exc:  # noqa: BLE001  # a reply to a finished run
                logger.debug("chat %s: on_drop failed: %s", self.chat_id, exc)
