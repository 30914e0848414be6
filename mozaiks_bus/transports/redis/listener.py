"""One pub/sub connection per process, shared by every subscription, that notices
when it has gone deaf.

Subscriptions are reference-counted Redis patterns (PSUBSCRIBE) and channels
(SUBSCRIBE); the listener runs while there is at least one and hands every message
to one callback. Liveness: any message proves the link alive; after
``health_check_interval_s`` of silence it sends PING and must *read* the reply within
another interval, else the link is declared dead (half-open TCP looks exactly like
this), closed and re-established with bounded exponential backoff, resubscribing to
the current set. Each re-established link calls ``on_reconnect(down_seconds)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from mozaiks_bus._loop import call_on_loop, cancel_and_wait, wait_set
from mozaiks_bus.connection import create_async_client, text
from mozaiks_bus.connection.availability import Availability
from mozaiks_bus.connection.redis_errors import REDIS_ERRORS
from mozaiks_bus.retry import Backoff
from mozaiks_bus.settings import BusSettings
from mozaiks_bus.transports.redis.confirmations import Confirmations

__all__ = ["PubSubListener"]

logger = logging.getLogger("mozaiks_bus.transports.redis.listener")
MessageCallback = Callable[[dict[str, Any]], None]
_WHAT = "the fan-out listener"


class PubSubListener:
    """A self-healing pub/sub reader; ``status`` is idle | connecting | receiving |
    reconnecting | stopped."""

    def __init__(
        self, url: str, settings: BusSettings, *, on_message: MessageCallback,
        on_reconnect: Callable[[float], None], availability: Availability | None = None,
        node_url: Callable[[bool], str] | None = None,
    ) -> None:
        """``node_url`` (a cluster): the plain URL of the node to listen on, asked before
        every connect; its argument says the last link failed (so move to another node:
        classic pub/sub reaches every node of a cluster)."""
        self.url = url
        self._node_url = node_url
        self._failed = False
        self._availability = availability or Availability(url)
        self.settings = settings
        self._on_message = on_message
        self._on_reconnect = on_reconnect
        self._lock = threading.Lock()
        # copy-on-write maps: readers on the loop iterate a stable snapshot
        self.patterns: dict[str, int] = {}
        self.channels: dict[str, int] = {}
        self.status = "idle"
        self.last_message_at = time.monotonic()
        self._down_since: float | None = None
        self._pubsub: PubSub | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._changed = asyncio.Event()
        self.confirmations = Confirmations()

    # -- subscriptions ------------------------------------------------------------------

    def add(self, name: str, *, pattern: bool) -> None:
        """Take a reference on a pattern or channel (subscribes on the first)."""
        with self._lock:
            current = dict(self.patterns if pattern else self.channels)
            current[name] = current.get(name, 0) + 1
            self._store(current, pattern)
        if current[name] == 1:
            self._changed_soon()

    def remove(self, name: str, *, pattern: bool) -> None:
        """Release a reference (unsubscribes on the last)."""
        with self._lock:
            current = dict(self.patterns if pattern else self.channels)
            if name not in current:
                return
            current[name] -= 1
            last = current[name] <= 0
            if last:
                del current[name]
            self._store(current, pattern)
        if last:
            self._changed_soon()

    def _store(self, current: dict[str, int], pattern: bool) -> None:
        if pattern:
            self.patterns = current
        else:
            self.channels = current

    def _changed_soon(self) -> None:
        call_on_loop(self._loop, self._apply_changes)

    def _apply_changes(self) -> None:
        self._changed.set()
        pubsub = self._pubsub
        if pubsub is None or self.status != "receiving":
            return  # the (re)connect subscribes to the current set
        want_p, want_c = set(self.patterns), set(self.channels)
        have_p = {text(p) for p in pubsub.patterns}
        have_c = {text(c) for c in pubsub.channels}

        async def apply() -> None:
            try:
                if want_p - have_p:
                    await pubsub.psubscribe(*(want_p - have_p))
                if have_p - want_p:
                    await pubsub.punsubscribe(*(have_p - want_p))
                if want_c - have_c:
                    await pubsub.subscribe(*(want_c - have_c))
                if have_c - want_c:
                    await pubsub.unsubscribe(*(have_c - want_c))
                    self.confirmations.forget(have_c - want_c)
            except REDIS_ERRORS as exc:
                logger.info("re-subscribing failed (%s); the listener will reconnect", exc)

        asyncio.get_running_loop().create_task(apply())

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the listening task on the running loop."""
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="mozaiks-bus-listener")

    async def stop(self) -> None:
        """Stop listening and close the connection."""
        self._stopping = True
        if self._task is not None:
            await cancel_and_wait([self._task])
            self._task = None
        self.status = "stopped"

    @property
    def subscribed(self) -> bool:
        """Whether anything is subscribed."""
        return bool(self.patterns or self.channels)

    async def _run(self) -> None:
        backoff = Backoff()
        while not self._stopping:
            if not self.subscribed:
                self.status = "idle"
                self._changed.clear()
                await wait_set(self._changed, 1.0)
                continue
            try:
                await self._listen_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001  # any failure: reconnect, bounded
                self._failed = True
                if self._down_since is None:
                    self._down_since = time.monotonic()
                self.status = "reconnecting"
                await self._availability.pause(_WHAT, exc, backoff)
            else:
                backoff.reset()

    async def _listen_once(self) -> None:
        self.status = "reconnecting" if self._down_since is not None else "connecting"
        interval = self.settings.health_check_interval_s
        # RESP2: under redis-py 8.1's RESP3 default every pub/sub message goes through
        # the push-notification handlers, which format the whole reply into a log text
        # even with DEBUG off (profiled: half the listener's time)
        url = self.url if self._node_url is None else self._node_url(self._failed)
        self._failed = False
        client = create_async_client(
            url, client_name=f"mozaiks-bus:{self.settings.service}:listen",
            socket_timeout=None, socket_connect_timeout=interval, retries=0, protocol=2,
        )
        pubsub = client.pubsub(ignore_subscribe_messages=False)
        try:
            patterns, channels = list(self.patterns), list(self.channels)
            # receiving once Redis confirmed them all (the watchdog fails a deaf link)
            self.confirmations.expect([*patterns, *channels])
            if patterns:
                await asyncio.wait_for(pubsub.psubscribe(*patterns), interval * 2)
            if channels:
                await asyncio.wait_for(pubsub.subscribe(*channels), interval * 2)
            self._pubsub = pubsub
            await self._read_until_dead(pubsub, interval)
        finally:
            self._pubsub = None
            self.confirmations.forget()
            await _close_quietly(pubsub, client)

    def _connected(self) -> None:
        self.status = "receiving"
        self._availability.found(_WHAT)
        self.last_message_at = time.monotonic()
        if self._down_since is not None:
            down = time.monotonic() - self._down_since
            self._down_since = None
            logger.warning("pub/sub listener reconnected after %.2fs", down)
            self._on_reconnect(down)
        self._apply_changes()  # what changed while connecting

    async def _read_until_dead(self, pubsub: PubSub, interval: float) -> None:
        """A reader blocks on the socket (no per-message timer); a watchdog PINGs a
        silent link and fails it when no reply is read."""
        reader = asyncio.create_task(self._reader(pubsub))
        watchdog = asyncio.create_task(self._watchdog(pubsub, interval))
        try:
            done, _ = await asyncio.wait({reader, watchdog}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # re-raises what ended the link
        finally:
            await cancel_and_wait([reader, watchdog])

    async def _reader(self, pubsub: PubSub) -> None:
        on_message = self._on_message
        while not self._stopping:
            message = await pubsub.get_message(timeout=None)
            self.last_message_at = time.monotonic()
            if message is None:
                continue
            kind = message["type"]
            if kind in ("pmessage", "message"):
                on_message(message)
            elif kind in ("subscribe", "psubscribe"):
                self.confirmations.confirm(text(message["channel"]))
            elif not self.subscribed:
                return  # everything was unsubscribed: go idle
            if self.confirmations.settled({*self.patterns, *self.channels}):
                self._connected()

    async def wait_subscribed(self, name: str, timeout: float) -> bool:
        """Wait until Redis confirmed the (P)SUBSCRIBE of ``name``; False on timeout
        (see :mod:`.confirmations`)."""
        if name in self.confirmations.names and self.status == "receiving":
            return True
        return await self.confirmations.wait(name, timeout)

    async def _watchdog(self, pubsub: PubSub, interval: float) -> None:
        ping_sent_at: float | None = None
        while not self._stopping:
            await asyncio.sleep(interval / 4)
            now = time.monotonic()
            if ping_sent_at is not None and self.last_message_at >= ping_sent_at:
                ping_sent_at = None  # something (the PONG, or a message) was read
            if ping_sent_at is not None and now - ping_sent_at > interval:
                raise ConnectionError(f"no reply to PING within {interval}s: the link is dead")
            if ping_sent_at is None and now - self.last_message_at > interval:
                await pubsub.ping()
                ping_sent_at = time.monotonic()

    def health(self) -> dict[str, object]:
        """Status, silence, subscription counts."""
        return {
            "listener": self.status,
            "receiving": self.status in {"receiving", "idle"},
            "last_message_age_s": round(time.monotonic() - self.last_message_at, 3),
            "subscriptions": len(self.patterns) + len(self.channels),
        }


async def _close_quietly(pubsub: PubSub, client: Redis) -> None:
    for closer in (pubsub.aclose, client.aclose):
        with contextlib.suppress(*REDIS_ERRORS, TimeoutError):
            await asyncio.wait_for(closer(), 1.0)
