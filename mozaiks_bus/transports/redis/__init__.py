"""The Redis transport: fan-out over pub/sub, durable XADD, the ui scope, one sender.

Contract (the parts live in this package's modules):

* **Sending** (:mod:`.sender`): every write goes through one batching sender;
  ``publish_nowait`` never blocks (bounded buffer, named drop policy), ``publish`` and
  ``publish_atomic`` wait for Redis's reply; concurrent ones share a pipeline.
* **Receiving** (:mod:`.listener`): one pub/sub connection per transport, shared by
  every local subscription: each subscribed pattern is one PSUBSCRIBE
  (reference-counted). A message matching several subscribed patterns is delivered
  once. Messages this transport sent itself are skipped (local delivery already
  happened when they were emitted).
* **Liveness**: any message proves the link alive; after ``health_check_interval_s``
  of silence the listener PINGs and must *read* the PONG within another interval, else
  the link is re-established with bounded backoff. Every re-established link is
  counted (``reconnects``) and announced to local subscribers as the local-only event
  ``bus.fanout_reconnected`` (``{"reconnects", "down_s"}``), since pub/sub loses what
  was published meanwhile.
* **ui** (:mod:`.ui`) and **durable** (:mod:`.clients`) are the capabilities
  :attr:`RedisTransport.ui` and :attr:`RedisTransport.streams`.

Wire format on a fan-out channel ``<prefix>:fanout:<type>``: ``<origin>|<CloudEvent
JSON>``, where ``<origin>`` is a 32-hex-digit id of the sending transport.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from mozaiks_bus.connection import AsyncClient, create_async_client, redact_url, text
from mozaiks_bus.connection.availability import Availability
from mozaiks_bus.errors import BrokerUnavailable, InvalidEvent
from mozaiks_bus.event import Event
from mozaiks_bus.keys import KeyMark
from mozaiks_bus.patterns import compile_pattern
from mozaiks_bus.routing import RECONNECTED_EVENT, Scope
from mozaiks_bus.settings import BusSettings
from mozaiks_bus.stats import BusStats
from mozaiks_bus.transports.base import RemoteDeliver
from mozaiks_bus.transports.redis.clients import RedisStreamClients
from mozaiks_bus.transports.redis.items import AtomicItem, CommandItem, EventItem
from mozaiks_bus.transports.redis.listener import PubSubListener
from mozaiks_bus.transports.redis.once import store_if_new_command
from mozaiks_bus.transports.redis.sender import Sender
from mozaiks_bus.transports.redis.ui import RedisUi

__all__ = ["RedisTransport"]

logger = logging.getLogger("mozaiks_bus.redis")


class RedisTransport:
    """Every remote scope of one :class:`~mozaiks_bus.Bus` over one Redis."""

    remote = True

    def __init__(self, url: str, *, settings: BusSettings, stats: BusStats) -> None:
        self.url = url
        self.settings = settings
        self.stats = stats
        self.keys = settings.keys
        self.origin = uuid.uuid4().hex
        self._origin_prefix = f"{self.origin}|".encode()
        self._client: AsyncClient | None = None
        self._deliver: RemoteDeliver | None = None
        self._lock = threading.Lock()
        self._subscribed: dict[str, int] = {}  # copy-on-write: read on the loop
        self.availability = Availability(url)
        self.listener = PubSubListener(
            url, settings, on_message=self._on_message, on_reconnect=self._on_reconnect,
            availability=self.availability, node_url=self._listen_url(),
        )
        self.sender = Sender(url, settings=settings, stats=stats, keys=self.keys,
                             origin=self.origin, availability=self.availability)
        self.ui = RedisUi(keys=self.keys, origin=self.origin, url=url,
                          send_frame=self.sender.send_frame, listener=self.listener,
                          client=lambda: self.client, subscribers=self._subscribers())
        self.streams = RedisStreamClients(url, settings)

    def _listen_url(self) -> Callable[[bool], str] | None:
        """Where the listener connects (None: ``url``; a cluster picks a node)."""
        return None

    def _subscribers(self) -> Callable[[str], Awaitable[int]] | None:
        """How to count a channel's subscribers when PUBLISH counts only its node's
        (None: PUBLISH's count is the whole count, as on one Redis)."""
        return None

    # -- life cycle ---------------------------------------------------------------------

    async def start(self, deliver: RemoteDeliver) -> None:
        """Create the client and the sender/listener tasks (connects lazily; never fails
        because Redis is down: the tasks retry with backoff)."""
        self._deliver = deliver
        client = create_async_client(
            self.url, client_name=f"mozaiks-bus:{self.settings.service}:send", retries=0,
        )
        self._client = client
        self.sender.start(client)
        self.listener.start()

    async def stop(self) -> None:
        """Flush the buffer (bounded by the publish timeout), then disconnect."""
        await self.sender.stop()
        await self.listener.stop()
        await self.streams.aclose()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @property
    def client(self) -> AsyncClient:
        """The command client (use on the bus loop, after start)."""
        if self._client is None:
            raise BrokerUnavailable("the Redis transport is not started")
        return self._client

    # -- fan-out ------------------------------------------------------------------------

    def subscribe(self, pattern: str) -> None:
        """Receive fan-out events matching ``pattern`` (PSUBSCRIBE once per pattern)."""
        with self._lock:
            subscribed = dict(self._subscribed)
            subscribed[pattern] = subscribed.get(pattern, 0) + 1
            self._subscribed = subscribed
        self.listener.add(self.keys.fanout_subscription(pattern), pattern=True)

    def unsubscribe(self, pattern: str) -> None:
        """Release one reference; PUNSUBSCRIBE when the last one goes."""
        with self._lock:
            subscribed = dict(self._subscribed)
            if pattern not in subscribed:
                return
            subscribed[pattern] -= 1
            if subscribed[pattern] <= 0:
                del subscribed[pattern]
            self._subscribed = subscribed
        self.listener.remove(self.keys.fanout_subscription(pattern), pattern=True)

    def publish_nowait(self, event: Event, scopes: Scope, payload: str) -> None:
        """Buffer ``event`` for the sender; never blocks or raises."""
        self.sender.publish_nowait(EventItem(event, scopes, payload))

    async def publish(self, event: Event, scopes: Scope, payload: str, *,
                      min_replicas: int = 0) -> None:
        """Send ``event`` in the next pipeline and wait for Redis's reply (bounded by
        ``publish_timeout_s``: TimeoutError, and it is not sent late)."""
        await self.sender.confirm(EventItem(event, scopes, payload, min_replicas=min_replicas),
                                  bounded=True)

    async def publish_atomic(self, items: Sequence[tuple[Event, Scope, str]],
                             marks: Sequence[KeyMark] = (), *, min_replicas: int = 0) -> None:
        """Send several events in one MULTI/EXEC with ``marks`` (``SET key value EX
        ttl`` each): all stored, or none (then raise); bounded like :meth:`publish`."""
        group = [EventItem(event, scopes, payload) for event, scopes, payload in items]
        await self.sender.confirm(AtomicItem(group, tuple(marks), min_replicas=min_replicas),
                                  bounded=True)

    async def publish_once(self, items: Sequence[tuple[Event, Scope, str]],
                           marks: Sequence[KeyMark], *, min_replicas: int = 0) -> list[Any]:
        """Store each event whose mark key is empty and set its mark, in one script
        (:mod:`.once`); nothing at all if a key holds another value. Per event: ``1``
        (stored now) or the value found (bounded like :meth:`publish`)."""
        group = [EventItem(event, scopes, payload) for event, scopes, payload in items]
        command = store_if_new_command(self.sender.commands, group, marks)
        found: list[Any] = await self.sender.confirm(
            CommandItem(command, stores=tuple(group), min_replicas=min_replicas), bounded=True)
        if any(value != 1 for value in found):
            self.sender.commands.forget_index()  # its SADDs may not have run
        return found

    async def execute(self, command: tuple[Any, ...]) -> Any:
        """One command in the sender's next pipeline; its reply (bounded like
        :meth:`publish`; an error reply is raised)."""
        return await self.sender.confirm(CommandItem(command), bounded=True)

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until the sender has handed everything buffered so far to Redis (or
        dropped it); False if ``timeout`` ran out first."""
        return await self.sender.flush(timeout)

    def _on_message(self, message: dict[str, Any]) -> None:
        channel: bytes = message["channel"]
        if message["type"] == "message":
            self.ui.on_message(channel, message["data"])
            return
        raw: bytes = message["data"]
        if raw.startswith(self._origin_prefix):
            return  # our own event: delivered locally when it was emitted
        type_name = self.keys.fanout_type(channel)
        if not self._first_matching_pattern_is(type_name, message["pattern"]):
            return
        try:
            event = Event.from_wire(raw[raw.find(b"|") + 1:])
        except InvalidEvent as exc:
            logger.warning("dropped a malformed fan-out message on %r: %s", channel, exc)
            return
        if self._deliver is not None:
            self._deliver(event)

    def _first_matching_pattern_is(self, type_name: str, pattern: bytes | str) -> bool:
        """With overlapping patterns Redis sends one copy per pattern: keep one."""
        subscribed = self._subscribed
        if len(subscribed) == 1:
            return True
        received = text(pattern)
        for candidate in sorted(subscribed):
            if compile_pattern(candidate).matches(type_name):
                return self.keys.fanout_subscription(candidate) == received
        return False

    def _on_reconnect(self, down_s: float) -> None:
        self.stats.incr("reconnects")
        self.ui.relinked()
        if self._deliver is None:
            return
        event = Event.create(
            RECONNECTED_EVENT, {"reconnects": self.stats.get("reconnects"), "down_s": down_s},
            source=self.settings.service,
        )
        self._deliver(event)

    def health(self) -> dict[str, object]:
        """``listener``: idle | connecting | receiving | reconnecting | stopped."""
        return {
            "transport": "redis",
            "url": redact_url(self.url),
            **self.listener.health(),
            **self.availability.health(),
            "buffered": self.sender.buffered,
            "reconnects": self.stats.get("reconnects"),
            "dropped_remote": self.stats.get("dropped_remote"),
        }
