"""Local delivery: subscriptions, handler calls and their isolation.

Contract:

* A **sync** handler runs inline, in the publishing thread, in subscription order:
  exactly once per matching subscription, before ``emit``/``publish`` returns.
* An **async** handler gets events through its subscription's own bounded queue,
  drained in order by one task on the bus loop. When the queue is full the
  subscription's policy decides: ``drop_oldest`` (default) discards the oldest queued
  event, ``drop_newest`` discards the incoming one. Every drop is counted
  (``dropped_local``) and logged, so memory stays bounded when a handler is slow.
* A handler that raises never stops the others: the error is logged with the handler,
  the event type and id, and counted (``failed``).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from mozaiks_bus._loop import running_loop
from mozaiks_bus.event import Event
from mozaiks_bus.patterns import Pattern, compile_pattern
from mozaiks_bus.stats import BusStats

__all__ = ["DropPolicy", "Handler", "LocalSubscriptions", "Subscription", "handler_name"]

Handler = Callable[[Event], Any]
DropPolicy = Literal["drop_oldest", "drop_newest"]
LoopGetter = Callable[[], asyncio.AbstractEventLoop]
logger = logging.getLogger("mozaiks_bus.local")


def handler_name(handler: Callable[..., Any]) -> str:
    """A readable name for logs, also for partials and callable objects."""
    target = handler.func if isinstance(handler, functools.partial) else handler
    module = getattr(target, "__module__", None) or "?"
    name = getattr(target, "__qualname__", None) or type(target).__qualname__
    return f"{module}.{name}"


def is_async_callable(handler: Callable[..., Any]) -> bool:
    """True for coroutine functions, partials of them and objects with an async __call__."""
    while isinstance(handler, functools.partial):
        handler = handler.func
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(handler, "__call__", None)  # noqa: B004  # objects with async __call__
    return call is not None and inspect.iscoroutinefunction(call)


class Subscription:
    """One ``(pattern, handler)`` pair and, for async handlers, its bounded queue."""

    def __init__(
        self,
        pattern: Pattern,
        handler: Handler,
        *,
        maxsize: int,
        policy: DropPolicy,
        stats: BusStats,
        loop_getter: LoopGetter,
    ) -> None:
        self.pattern = pattern
        self.handler = handler
        self.name = handler_name(handler)
        self.is_async = is_async_callable(handler)
        self._maxsize = maxsize
        self._policy = policy
        self._stats = stats
        self._loop_getter = loop_getter
        self._queue: deque[Event] = deque()
        self._lock = threading.Lock()
        self._draining = False
        self._idle = threading.Event()
        self._idle.set()
        self.active = True

    # -- delivery -------------------------------------------------------------------

    def deliver(self, event: Event) -> None:
        """Hand ``event`` to the handler: inline if sync, queued if async."""
        if not self.is_async:
            self._call_sync(event)
            return
        with self._lock:
            if len(self._queue) >= self._maxsize:
                self._drop(event)
                if self._policy == "drop_newest":
                    return
            self._queue.append(event)
            start = not self._draining
            self._draining = True
            self._idle.clear()
        if start:
            self._schedule_drain()

    def _drop(self, incoming: Event) -> None:
        dropped = self._queue.popleft() if self._policy == "drop_oldest" else incoming
        self._stats.incr("dropped_local")
        logger.warning(
            "subscriber queue full (%d) for %s: dropped %s %s (%s)",
            self._maxsize, self.name, dropped.type, dropped.id, self._policy,
        )

    def _call_sync(self, event: Event) -> None:
        try:
            result = self.handler(event)
        except Exception:  # noqa: BLE001  # isolation: logged and counted in _failed
            self._failed(event)
            return
        if inspect.isawaitable(result):
            # A "sync" callable that returned an awaitable: run it on the bus loop.
            self._run_awaitable_later(event, result)
            return
        self._stats.incr("delivered")

    def _run_awaitable_later(self, event: Event, awaitable: Awaitable[Any]) -> None:
        async def _await() -> None:
            await self._await_one(event, awaitable)

        loop = self._loop_getter()
        if running_loop() is loop:
            loop.create_task(_await())
        else:
            asyncio.run_coroutine_threadsafe(_await(), loop)

    def _schedule_drain(self) -> None:
        loop = self._loop_getter()
        if running_loop() is loop:
            loop.create_task(self._drain())
        else:
            asyncio.run_coroutine_threadsafe(self._drain(), loop)

    async def _drain(self) -> None:
        while True:
            with self._lock:
                if not self.active:
                    self._queue.clear()
                if not self._queue:
                    self._draining = False
                    self._idle.set()
                    return
                event = self._queue.popleft()
            try:
                awaitable = self.handler(event)
            except Exception:  # noqa: BLE001  # isolation: logged and counted in _failed
                self._failed(event)
                continue
            await self._await_one(event, awaitable)

    async def _await_one(self, event: Event, awaitable: Awaitable[Any]) -> None:
        try:
            await awaitable
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001  # isolation: logged and counted in _failed
            self._failed(event)
        else:
            self._stats.incr("delivered")

    def _failed(self, event: Event) -> None:
        self._stats.incr("failed")
        logger.exception("handler %s failed on %s %s", self.name, event.type, event.id)

    # -- introspection ----------------------------------------------------------------

    @property
    def queued(self) -> int:
        """Events waiting in this subscription's queue."""
        return len(self._queue)

    @property
    def idle(self) -> bool:
        """True when nothing is queued or being handled."""
        return self._idle.is_set()


class LocalSubscriptions:
    """The subscriptions of one bus, matched by pattern, delivered in subscription order."""

    def __init__(
        self,
        *,
        stats: BusStats,
        loop_getter: LoopGetter,
        queue_size: int = 10_000,
        policy: DropPolicy = "drop_oldest",
    ) -> None:
        self._stats = stats
        self._loop_getter = loop_getter
        self._queue_size = queue_size
        self._policy = policy
        self._lock = threading.Lock()
        self._subs: tuple[Subscription, ...] = ()
        self._by_type: dict[str, tuple[Subscription, ...]] = {}

    def subscribe(self, pattern: str, handler: Handler) -> Subscription:
        """Add a subscription (the same handler twice means two deliveries)."""
        sub = Subscription(
            compile_pattern(pattern), handler, maxsize=self._queue_size, policy=self._policy,
            stats=self._stats, loop_getter=self._loop_getter,
        )
        with self._lock:
            self._subs = (*self._subs, sub)
            self._by_type = {}
        return sub

    def unsubscribe(self, pattern: str, handler: Handler) -> bool:
        """Remove the first subscription of ``handler`` on ``pattern``; False if none."""
        with self._lock:
            for index, sub in enumerate(self._subs):
                if sub.pattern.text == pattern and sub.handler == handler:
                    sub.active = False
                    self._subs = self._subs[:index] + self._subs[index + 1:]
                    self._by_type = {}
                    return True
        return False

    def matching(self, type_name: str) -> tuple[Subscription, ...]:
        """Subscriptions whose pattern matches ``type_name``, in subscription order."""
        found = self._by_type.get(type_name)
        if found is None:
            subs = self._subs
            found = tuple(sub for sub in subs if sub.pattern.matches(type_name))
            with self._lock:
                if self._subs is subs:
                    self._by_type[type_name] = found
        return found

    def deliver(self, event: Event) -> int:
        """Deliver to every matching subscription; returns how many matched."""
        subs = self.matching(event.type)
        for sub in subs:
            sub.deliver(event)
        return len(subs)

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        """All subscriptions, in order."""
        return self._subs

    def patterns(self) -> set[str]:
        """The distinct patterns subscribed to."""
        return {sub.pattern.text for sub in self._subs}

    async def drain(self, timeout: float) -> bool:
        """Wait until every async subscription is idle; False if ``timeout`` ran out."""
        deadline = asyncio.get_running_loop().time() + timeout
        while any(not sub.idle for sub in self._subs):
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True
