"""A private asyncio loop on a daemon thread.

Sync callers with no running loop (a plain script, a unittest, a WSGI handler) still
need somewhere for async handlers and the background sender to run. The bus starts one
:class:`LoopThread` lazily, the first time it needs one, and stops it on ``stop()`` or
at interpreter exit.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import threading
import weakref
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

__all__ = ["LoopThread", "call_on_loop", "running_loop"]

T = TypeVar("T")
_LIVE: weakref.WeakSet[LoopThread] = weakref.WeakSet()


class LoopThread:
    """An event loop running forever on its own daemon thread until :meth:`stop`."""

    def __init__(self, name: str = "mozaiks-bus-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._ready.wait(timeout=5.0)
        _LIVE.add(self)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        try:
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    @property
    def alive(self) -> bool:
        """Whether the loop thread is still running."""
        return self._thread.is_alive() and not self.loop.is_closed()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Run ``coro`` on the loop; returns a concurrent future for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel what is left, stop the loop and join the thread (bounded)."""
        if not self._thread.is_alive():
            return
        if threading.current_thread() is self._thread:
            self.loop.call_soon(self.loop.stop)
            return

        async def _cancel_rest() -> None:
            current = asyncio.current_task()
            rest = [task for task in asyncio.all_tasks() if task is not current]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        # Best effort: the loop is stopped below whatever the cancellation did.
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(_cancel_rest(), self.loop).result(timeout)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, or None."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def call_on_loop(loop: asyncio.AbstractEventLoop | None, callback: Callable[[], Any]) -> None:
    """Run ``callback`` on ``loop``: now if this thread runs it, else thread-safely soon.

    Nothing happens when there is no loop (yet), or it was closed."""
    if loop is None or loop.is_closed():
        return
    if running_loop() is loop:
        callback()
    else:
        loop.call_soon_threadsafe(callback)


@atexit.register
def _stop_all() -> None:
    for loop_thread in list(_LIVE):
        loop_thread.stop(timeout=1.0)
