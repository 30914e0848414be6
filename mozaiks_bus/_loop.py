"""Where a bus runs: the caller's event loop, or a private loop on a daemon thread.

Sync callers with no running loop (a plain script, a unittest, a WSGI handler) still
need somewhere for async handlers and the background sender to run. :class:`BusLoop`
binds a bus to the running loop of whoever first needs one, else starts a
:class:`LoopThread` lazily, and runs the bus's one-time start on it exactly once per
bound loop; the thread stops on ``close()`` or at interpreter exit.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import signal
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

__all__ = [
    "BusLoop",
    "LoopThread",
    "call_on_loop",
    "cancel_and_wait",
    "run_until_signalled",
    "running_loop",
    "spawn",
    "until_signalled",
    "wait_set",
]

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


async def until_signalled(signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> None:
    """Return when the process gets one of ``signals`` (handlers removed after)."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in signals:
        loop.add_signal_handler(signum, stopping.set)
    try:
        await stopping.wait()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


async def run_until_signalled(start: Callable[[], Awaitable[None]],
                              stop: Callable[[], Awaitable[None]]) -> None:
    """``start()``, then wait for SIGINT/SIGTERM, then ``stop()``; a signal that comes
    while ``start()`` still runs (waiting for Redis) cancels it and stops too."""
    signalled = asyncio.ensure_future(until_signalled())
    await asyncio.sleep(0)  # the signal handlers are in place from here on
    starting = asyncio.ensure_future(start())
    try:
        await asyncio.wait({starting, signalled}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()
            await signalled
    finally:
        for task in (starting, signalled):
            task.cancel()
        await asyncio.gather(starting, signalled, return_exceptions=True)
        await stop()


def spawn(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any],
          keep: set[asyncio.Task[Any]] | None = None) -> None:
    """Run ``coro`` on ``loop`` without waiting for it, from any thread.

    On the loop's own thread the task is kept in ``keep`` (when given) until it ends, so
    it is not garbage-collected mid-flight."""
    if running_loop() is loop:
        task = loop.create_task(coro)
        if keep is not None:
            keep.add(task)
            task.add_done_callback(keep.discard)
    else:
        asyncio.run_coroutine_threadsafe(coro, loop)


class BusLoop:
    """The loop one bus runs on, and its one-time ``start`` on that loop.

    ``get()`` binds lazily: to the running loop of the first caller, else to a private
    :class:`LoopThread`. If the bound loop closes (a test's loop ends), the next
    ``get()`` binds again and ``start`` runs again on the new loop."""

    def __init__(self, start: Callable[[], Awaitable[None]]) -> None:
        self._start = start
        self._lock = threading.Lock()
        self._bound: asyncio.AbstractEventLoop | None = None
        self._thread: LoopThread | None = None
        self._started: asyncio.Future[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()

    @property
    def bound(self) -> asyncio.AbstractEventLoop | None:
        """The loop bound now (None if none yet, or it closed)."""
        loop = self._bound
        return loop if loop is not None and not loop.is_closed() else None

    @property
    def start_requested(self) -> bool:
        """Whether ``start`` was begun on the bound loop (it may still be running)."""
        return self._started is not None

    @property
    def started(self) -> bool:
        """Whether ``start`` finished on the bound loop."""
        return self._started is not None and self._started.done()

    def started_here(self) -> bool:
        """Whether ``start`` finished on the bound loop and that is the running loop
        (the fast path of a call that would otherwise await :meth:`ensure_started`)."""
        started = self._started
        return (started is not None and started.done()
                and self._bound is asyncio.get_running_loop())

    def bind_running(self) -> None:
        """Bind to the running loop unless a live loop is bound already."""
        with self._lock:
            if self.bound is None:
                self._bound = asyncio.get_running_loop()
                self._started = None

    def get(self) -> asyncio.AbstractEventLoop:
        """The loop async handlers and the transport run on (bound lazily)."""
        loop = self.bound
        if loop is not None:
            return loop
        with self._lock:
            loop = self.bound
            if loop is not None:
                return loop
            loop = running_loop()
            if loop is None:
                if self._thread is None or not self._thread.alive:
                    self._thread = LoopThread()
                loop = self._thread.loop
            self._bound = loop
            self._started = None
            return loop

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the bus loop, from whichever loop the caller runs on."""
        loop = self.get()
        if loop is asyncio.get_running_loop():
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    def soon(self, coro: Coroutine[Any, Any, Any],
             loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Run ``coro`` on the bus loop without waiting for it (from any thread)."""
        spawn(loop or self.get(), coro, self._background)

    async def ensure_started(self) -> None:
        """Run ``start`` once on the bus loop; concurrent callers wait for that one run.

        A failed start is raised to every waiter and tried again by the next call."""
        loop = self.get()
        if loop is not asyncio.get_running_loop():
            await self.run(self.ensure_started())
            return
        if self._started is None:
            started = self._started = loop.create_future()
            try:
                await self._start()
            except BaseException as exc:
                self._started = None
                started.set_exception(exc)
                started.exception()  # mark retrieved; the caller gets it below
                raise
            started.set_result(None)
            return
        await asyncio.shield(self._started)

    def ensure_started_soon(self, on_error: Callable[[Exception], None]) -> None:
        """Start in the background if nobody did; a failure goes to ``on_error``."""
        if self._started is not None and self.bound is not None:
            return
        loop = self.get()

        async def _start() -> None:
            try:
                await self.ensure_started()
            except Exception as exc:  # noqa: BLE001  # reported; the next use retries
                on_error(exc)

        self.soon(_start(), loop)

    async def close(self) -> None:
        """Stop the private loop thread, if one was started (bounded)."""
        if self._thread is not None:
            await asyncio.to_thread(self._thread.stop)
            self._thread = None


@atexit.register
def _stop_all() -> None:
    for loop_thread in list(_LIVE):
        loop_thread.stop(timeout=1.0)


async def wait_set(event: asyncio.Event, timeout: float) -> bool:
    """Wait until ``event`` is set or ``timeout`` passed; whether it was set.

    For loops that only end by being cancelled: Python 3.11's ``asyncio.wait_for`` can
    swallow a cancellation that arrives as the inner wait completes (CPython gh-86296;
    fixed in 3.12), which left such a loop running and its ``stop()`` hanging.
    ``asyncio.timeout`` tells its own cancellation from an outside one."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True


async def cancel_and_wait(tasks: list[asyncio.Task[Any]], *, rounds: int = 20,
                          every_s: float = 0.25) -> list[asyncio.Task[Any]]:
    """Cancel ``tasks`` and wait until they ended, cancelling again any that is still
    running after ``every_s`` (a cancellation swallowed by a library, or by 3.11's
    ``wait_for``, must not hang a ``stop()``). Returns those still running after
    ``rounds`` (logged by the caller); results and exceptions are retrieved."""
    pending = [task for task in tasks if not task.done()]
    for _ in range(rounds):
        if not pending:
            break
        for task in pending:
            task.cancel()
        _, still = await asyncio.wait(pending, timeout=every_s)
        pending = list(still)
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" later
    return pending
