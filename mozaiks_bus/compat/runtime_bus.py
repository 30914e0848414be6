"""The drop-in for the platform's ``mozaiks_infra.event_bus``: ``EventBus`` / ``event_bus``.

``EventBus`` / ``event_bus`` keep every public method and semantic of the platform's
``mozaiks_infra.event_bus``:

* ``publish(event, data)`` is sync, returns None, never raises, and needs no running
  loop and no Redis. Callbacks get the data dict itself (by reference); sync
  callbacks run inline in registration order; async callbacks run as tasks, retried
  up to 3 times (0.5 s, 1 s, 2 s backoff). With no running loop, async callbacks run on
  a private loop thread instead of failing (the original counted them as failures).
* Names match exactly and may contain ``_``, ``.`` or ``:``; no patterns.
* ``get_stats()``, ``reset_stats()``, ``get_event_history()``, ``on_event``,
  ``connect``/``close`` and the background-processing methods (no-ops, as their
  original never received work) keep their shapes.
* Tolerance: ``publish(event_type=..., data=...)`` (the call form of the platform's
  ``event_bridge.py``) is accepted and returns an already-finished awaitable, so
  ``await bus.publish(event_type=..., data=...)`` works instead of raising TypeError.

With ``MOZAIKS_BROKER_URL`` set, the same calls also reach other processes per the
routing table (callbacks there get the decoded dict). A name that is not a valid
event type, data that is not JSON-safe or that fails its catalog model stays local and
is logged once per event name; the publisher never sees an error.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Generator
from typing import Any

from mozaiks_bus._loop import LoopThread
from mozaiks_bus.bus import Bus
from mozaiks_bus.errors import InvalidEvent, MozaiksBusError
from mozaiks_bus.event import Event, is_json_safe, validate_type
from mozaiks_bus.routing import Scope
from mozaiks_bus.settings import BROKER_URL_ENV

__all__ = ["EventBus", "event_bus", "subject_of"]

logger = logging.getLogger("mozaiks_bus.compat")
Callback = Callable[[Any], Any]
HISTORY_LIMIT = 100
ASYNC_RETRY_DELAYS = (0.5, 1.0, 2.0)


class _Done:
    """An awaitable that is already finished (returned for the ``event_type=`` form)."""

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # pragma: no cover  # makes this a generator


class EventBus:
    """The platform's in-process event bus, optionally bridged to a mozaiks-bus ``Bus``.

    ``bus``: the Bus to bridge to; None builds one from the environment on first use
    when ``MOZAIKS_BROKER_URL`` is set (otherwise this stays purely in-process).
    """

    def __init__(self, bus: Bus | None = None, *, history_limit: int = HISTORY_LIMIT) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[str, list[Callback]] = {}
        self._history: dict[str, deque[dict[str, Any]]] = {}
        self._history_limit = history_limit
        self.stats: dict[str, Any] = _empty_stats()
        self._bus = bus
        self._bus_resolved = bus is not None
        self._remote_names: set[str] = set()
        self._warned: set[tuple[str, str]] = set()
        self._loop_thread: LoopThread | None = None
        self._tasks: set[asyncio.Future[None] | concurrent.futures.Future[None]] = set()
        self.async_queue: asyncio.Queue[Any] = asyncio.Queue()

    # -- the platform's public methods --------------------------------------------------

    def subscribe(self, event: str, callback: Callback) -> None:
        """Append ``callback`` for ``event`` (exact name; twice means two deliveries)."""
        with self._lock:
            self._subscribers.setdefault(event, []).append(callback)
        logger.debug("subscribed %s to %s", getattr(callback, "__name__", callback), event)
        self._watch_remote(event)

    def unsubscribe(self, event: str, callback: Callback) -> None:
        """Remove the first equal callback; unknown events or callbacks are ignored."""
        with self._lock:
            callbacks = self._subscribers.get(event)
            if not callbacks or callback not in callbacks:
                return
            callbacks.remove(callback)
            if not callbacks:
                del self._subscribers[event]

    def publish(
        self, event: str | None = None, data: Any = None, *, event_type: str | None = None
    ) -> _Done | None:
        """Deliver ``data`` to this process's callbacks now and bridge it; never raises.

        Returns None, except for the tolerated ``event_type=`` keyword form, which
        returns an already-finished awaitable.
        """
        name = event if event is not None else event_type
        try:
            if name is None:
                raise TypeError("publish() needs an event name")
            self._deliver_local(name, data)
            self._send_remote(name, data)
        except Exception:  # the platform's contract: publish never raises
            logger.exception("event_bus.publish(%r) failed", name)
        return _Done() if event is None and event_type is not None else None

    def on_event(self, event_name: str) -> Callable[[Callback], Callback]:
        """Decorator: subscribe the function to ``event_name`` and return it unchanged."""

        def decorator(func: Callback) -> Callback:
            self.subscribe(event_name, func)
            return func

        return decorator

    def get_stats(self) -> dict[str, Any]:
        """``{events_published, events_delivered, delivery_failures, events_by_type}``."""
        with self._lock:
            snapshot = dict(self.stats)
            snapshot["events_by_type"] = dict(self.stats["events_by_type"])
        return snapshot

    def reset_stats(self) -> None:
        """Zero every counter."""
        with self._lock:
            self.stats = _empty_stats()

    def get_event_history(
        self, event_type: str | None = None, limit: int = 10
    ) -> dict[str, list[dict[str, Any]]]:
        """``{event: [{timestamp, data}, ...]}``: the last ``limit`` entries per event."""
        with self._lock:
            names = [event_type] if event_type is not None else list(self._history)
            return {
                name: list(self._history.get(name, ()))[-limit:] if limit > 0 else []
                for name in names
            }

    async def connect(self) -> None:
        """Start the bridged Bus, if there is one (optional: publish works without it)."""
        bus = self._resolve_bus()
        if bus is not None:
            await bus.start()

    async def close(self) -> None:
        """Stop the bridged Bus and the private loop thread, if any."""
        bus = self._resolve_bus()
        if bus is not None and not bus.closed:
            await bus.stop()
        if self._loop_thread is not None:
            await asyncio.to_thread(self._loop_thread.stop)
            self._loop_thread = None

    async def start_background_processing(self) -> None:
        """Kept for compatibility: the original's queue never received work."""

    async def stop_background_processing(self) -> None:
        """Kept for compatibility: the original's queue never received work."""

    # -- local delivery ------------------------------------------------------------------

    def _deliver_local(self, name: str, data: Any, *, count_published: bool = True) -> None:
        with self._lock:
            if count_published:
                self.stats["events_published"] += 1
                by_type = self.stats["events_by_type"]
                by_type[name] = by_type.get(name, 0) + 1
                history = self._history.setdefault(name, deque(maxlen=self._history_limit))
                history.append({"timestamp": time.time(), "data": data})
            callbacks = list(self._subscribers.get(name, ()))
        for callback in callbacks:
            if asyncio.iscoroutinefunction(callback):
                self._schedule_async(name, callback, data)
                continue
            try:
                callback(data)
            except Exception:  # isolate subscribers from each other
                self._count("delivery_failures")
                logger.exception("event_bus callback %s failed for %s", _name(callback), name)
            else:
                self._count("events_delivered")

    def _schedule_async(self, name: str, callback: Callback, data: Any) -> None:
        coro = self._run_with_retries(name, callback, data)
        task: asyncio.Future[None] | concurrent.futures.Future[None]
        try:
            task = asyncio.get_running_loop().create_task(coro)
        except RuntimeError:
            if self._loop_thread is None or not self._loop_thread.alive:
                self._loop_thread = LoopThread("mozaiks-bus-compat")
            task = self._loop_thread.submit(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_with_retries(self, name: str, callback: Callback, data: Any) -> None:
        for attempt, delay in enumerate((0.0, *ASYNC_RETRY_DELAYS)):
            if delay:
                await asyncio.sleep(delay)
            try:
                await callback(data)
            except Exception:  # retried, then counted
                logger.warning(
                    "event_bus async callback %s failed for %s (attempt %d)",
                    _name(callback), name, attempt + 1, exc_info=True,
                )
            else:
                self._count("events_delivered")
                return
        self._count("delivery_failures")
        logger.error("event_bus async callback %s gave up on %s", _name(callback), name)

    def _count(self, key: str) -> None:
        with self._lock:
            self.stats[key] += 1

    # -- bridge to the Bus ----------------------------------------------------------------

    def _resolve_bus(self) -> Bus | None:
        if not self._bus_resolved:
            self._bus_resolved = True
            if os.environ.get(BROKER_URL_ENV):
                try:
                    self._bus = Bus.from_env()
                except MozaiksBusError:
                    logger.exception("event_bus: broker configured but unusable; staying local")
        return self._bus

    def _send_remote(self, name: str, data: Any) -> None:
        bus = self._resolve_bus()
        if bus is None or not bus.transport.remote:
            return
        if not self._bridgeable(name, data):
            return
        try:
            bus.emit_remote(name, data, subject=subject_of(name, data))
        except InvalidEvent as exc:
            self._warn_once(name, f"stays local: {exc}")

    def _bridgeable(self, name: str, data: Any) -> bool:
        try:
            validate_type(name)
        except InvalidEvent:
            self._warn_once(name, "stays local: the name is not a valid bus event type")
            return False
        bus = self._bus
        if bus is None or bus.catalog.is_local_only(name) \
                or not bus.routing.resolve(name, subject="chat") & Scope.REMOTE:
            return False  # routed local only: nothing to bridge, nothing to warn about
        if not isinstance(data, dict) or not is_json_safe(data):
            self._warn_once(name, "stays local: its data is not a JSON-safe object")
            return False
        return True

    def _watch_remote(self, name: str) -> None:
        bus = self._resolve_bus()
        if bus is None or not bus.transport.remote or name in self._remote_names:
            return
        try:
            validate_type(name)
        except InvalidEvent:
            return
        self._remote_names.add(name)
        bus.subscribe_remote(name, self._on_remote_event)

    def _on_remote_event(self, event: Event) -> None:
        self._deliver_local(event.type, event.data, count_published=False)

    def _warn_once(self, name: str, message: str) -> None:
        if (name, message) not in self._warned:
            self._warned.add((name, message))
            logger.warning("event_bus: %s %s", name, message)


def _empty_stats() -> dict[str, Any]:
    return {
        "events_published": 0, "events_delivered": 0, "delivery_failures": 0,
        "events_by_type": {},
    }


def _name(callback: Callback) -> str:
    return getattr(callback, "__name__", None) or type(callback).__name__


def subject_of(name: str, data: Any) -> str | None:
    """The chat id of a ``chat.*`` payload (its ``chat_id``), the subject on the bus."""
    if name.startswith("chat.") and isinstance(data, dict):
        chat_id = data.get("chat_id")
        return chat_id if isinstance(chat_id, str) and chat_id else None
    return None


event_bus = EventBus()
"""The module-level singleton, as ``mozaiks_infra.event_bus.event_bus``."""
