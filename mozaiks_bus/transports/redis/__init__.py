"""The Redis transport: fan-out over pub/sub and durable XADD, with a batching sender.

Contract:

* **Sending.** ``send_nowait`` (behind ``Bus.emit``) appends to a bounded buffer and
  returns; one sender task drains the buffer into pipelines: ``PUBLISH`` for the
  fan-out scope, ``XADD`` (``MAXLEN ~ stream_hard_max_len``) plus the stream index for
  the durable scope. When the buffer is full the ``emit_drop_policy`` drops the oldest
  (or the newest) event. In a batch Redis did not take, fan-out-only events are
  dropped, counted (``dropped_remote``) and logged, never retried: fan-out is at most
  once, and a resend could duplicate what Redis had already published before the link
  failed; durable events go back to the front of the buffer (at least once). The
  sender then backs off (bounded) and goes on with what is buffered, so after Redis
  returns new events flow without a restart.
  ``send`` (behind ``await Bus.publish``) waits for its own pipeline reply; concurrent
  sends are coalesced into one pipeline per loop turn.
* **Receiving.** One pub/sub connection per transport, shared by every local
  subscription: each watched pattern is one PSUBSCRIBE (reference-counted). A message
  matching several watched patterns is delivered once. Messages this transport sent
  itself are skipped (local delivery already happened when they were emitted).
* **Liveness.** Any message proves the link alive. After ``health_check_interval_s``
  of silence the listener sends PING and must *read* the PONG within another interval;
  otherwise the link is declared dead (half-open TCP looks exactly like this), closed
  and re-established with bounded exponential backoff. Every re-established link is
  counted (``reconnects``) and announced to local subscribers as the local-only event
  ``bus.fanout_reconnected`` (``{"reconnects", "down_s"}``), since pub/sub loses what
  was published meanwhile. :meth:`health` reports ``receiving`` / ``reconnecting``.

Wire format on a fan-out channel ``<prefix>:fanout:<type>``: ``<origin>|<CloudEvent
JSON>``, where ``<origin>`` is a 32-hex-digit id of the sending transport.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import fakeredis
import hiredis
from redis import exceptions as rexc
from redis.asyncio import Redis

from mozaiks_bus._loop import call_on_loop
from mozaiks_bus.connection import create_async_client, redact_url, translate_redis_error
from mozaiks_bus.durable.streams import FIELD_EVENT
from mozaiks_bus.errors import BrokerUnavailable, InvalidEvent
from mozaiks_bus.event import Event, format_time
from mozaiks_bus.keys import Keys
from mozaiks_bus.patterns import compile_pattern
from mozaiks_bus.routing import Scope
from mozaiks_bus.settings import BusSettings
from mozaiks_bus.stats import BusStats
from mozaiks_bus.transports import RemoteDeliver
from mozaiks_bus.transports.redis.listener import PubSubListener

__all__ = ["RECONNECTED_EVENT", "RedisTransport"]

logger = logging.getLogger("mozaiks_bus.redis")
RECONNECTED_EVENT = "bus.fanout_reconnected"
_FRAME_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))
MAX_BATCH = 512
BACKOFF_MIN_S = 0.05
BACKOFF_MAX_S = 2.0
INDEX_REFRESH_S = 30.0  # how often a type's membership in the stream index is re-sent


# One chat's UI frame: appended to its bounded history stream (with a TTL) and published
# on its channel as "<history id>|<frame>", in one atomic step, so the ids a browser
# sees are in history order and resume can splice history and live with no gap.
UI_APPEND_SCRIPT = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'f', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('PUBLISH', KEYS[2], id .. '|' .. ARGV[3])
return id
"""


@dataclass(slots=True)
class _Outgoing:
    event: Event | None
    payload: str  # the CloudEvent JSON, or for a bare UI frame the frame JSON
    scopes: Scope
    future: asyncio.Future[Any] | None = None
    chat_id: str | None = None  # set for a bare UI frame (bus.ui.send)
    atomic: list[_Outgoing] | None = None  # a group sent inside MULTI/EXEC


class RedisTransport:
    """Fan-out over Redis pub/sub for one :class:`~mozaiks_bus.Bus`."""

    remote = True

    def __init__(self, url: str, *, settings: BusSettings, stats: BusStats) -> None:
        self.url = url
        self.settings = settings
        self.stats = stats
        self.keys = Keys(settings.prefix)
        self.origin = uuid.uuid4().hex
        self._origin_text = f"{self.origin}|"
        self._origin_prefix = self._origin_text.encode()
        self._channels: dict[str, str] = {}
        self._channel_prefix = f"{settings.prefix}:fanout:".encode()
        self._buffer: deque[_Outgoing] = deque()
        self._confirmed: deque[_Outgoing] = deque()
        self._buffer_lock = threading.Lock()
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Redis | None = None
        self._deliver: RemoteDeliver | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._watched: dict[str, int] = {}
        self._channel_handlers: dict[str, Callable[[bytes], None]] = {}
        self.listener = PubSubListener(
            url, settings, on_message=self._on_message, on_reconnect=self._on_reconnect
        )
        self._sender_idle = True
        self._fake = False
        self._connection: Any = None
        self._flush_waiters: list[asyncio.Future[None]] = []
        self._indexed: dict[str, float] = {}  # type -> when its SADD to the index was sent

    # -- life cycle ---------------------------------------------------------------------

    async def start(self, deliver: RemoteDeliver) -> None:
        """Create the client and the sender/listener tasks (connects lazily; never fails
        because Redis is down: the tasks retry with backoff)."""
        self._deliver = deliver
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._client = create_async_client(
            self.url, client_name=f"mozaiks-bus:{self.settings.service}:send",
            retries=0,
        )
        self._fake = isinstance(self._client, fakeredis.FakeAsyncRedis)
        self._tasks = [asyncio.create_task(self._send_loop(), name="mozaiks-bus-sender")]
        self.listener.start()
        if self._buffer or self._confirmed:
            self._wake.set()

    async def stop(self) -> None:
        """Flush the buffer (bounded by the publish timeout), then disconnect."""
        await self.flush(self.settings.publish_timeout_s)
        left = len(self._buffer)
        if left:
            self.stats.incr("dropped_remote", left)
            logger.warning("stopping with %d unsent fan-out events: dropped", left)
            self._buffer.clear()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self._fail_confirmed(RuntimeError("the transport stopped"))
        await self.listener.stop()
        if self._connection is not None and self._client is not None:
            await self._client.connection_pool.release(self._connection)
            self._connection = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @property
    def client(self) -> Redis:
        """The command client (use on the bus loop, after start)."""
        if self._client is None:
            raise BrokerUnavailable("the Redis transport is not started")
        return self._client

    # -- watching -----------------------------------------------------------------------

    def watch(self, pattern: str) -> None:
        """Receive fan-out events matching ``pattern`` (PSUBSCRIBE once per pattern)."""
        with self._buffer_lock:
            watched = dict(self._watched)
            watched[pattern] = watched.get(pattern, 0) + 1
            self._watched = watched
        self.listener.add(self._channel_pattern(pattern), pattern=True)

    def unwatch(self, pattern: str) -> None:
        """Release one reference; PUNSUBSCRIBE when the last one goes."""
        with self._buffer_lock:
            watched = dict(self._watched)
            if pattern not in watched:
                return
            watched[pattern] -= 1
            if watched[pattern] <= 0:
                del watched[pattern]
            self._watched = watched
        self.listener.remove(self._channel_pattern(pattern), pattern=True)

    def _channel_pattern(self, pattern: str) -> str:
        return self.keys.fanout_subscription(pattern)

    # -- sending ------------------------------------------------------------------------

    def send_nowait(self, event: Event, payload: str, scopes: Scope) -> None:
        """Buffer ``event`` for the sender; never blocks or raises."""
        item = _Outgoing(event, payload, scopes)
        limit = self.settings.emit_buffer_size
        with self._buffer_lock:
            if len(self._buffer) >= limit:
                self.stats.incr("dropped_remote")
                if self.settings.emit_drop_policy == "drop_newest":
                    return
                self._buffer.popleft()
            self._buffer.append(item)
            wake = self._sender_idle
            self._sender_idle = False
        if wake:
            call_on_loop(self._loop, self._wake_sender)

    async def send(self, event: Event, payload: str, scopes: Scope) -> None:
        """Send ``event`` in the next pipeline and wait for Redis's reply."""
        await self._confirm(_Outgoing(event, payload, scopes))

    async def send_ui(self, chat_id: str, frame: str) -> str:
        """Append a UI frame to ``chat_id``'s history and publish it; returns its id."""
        reply = await self._confirm(_Outgoing(None, frame, Scope.UI, chat_id=chat_id))
        return reply.decode() if isinstance(reply, bytes) else str(reply)

    async def send_atomic(self, items: Sequence[tuple[Event, Scope, str]]) -> None:
        """Send several events in one MULTI/EXEC: all stored, or none (then raise)."""
        group = [_Outgoing(event, payload, scopes) for event, scopes, payload in items]
        await self._confirm(_Outgoing(None, "", Scope.LOCAL, atomic=group))

    async def _confirm(self, item: _Outgoing) -> Any:
        item.future = asyncio.get_running_loop().create_future()
        with self._buffer_lock:
            self._confirmed.append(item)
            self._sender_idle = False
        self._wake_sender()
        return await item.future

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until the sender has handed everything buffered so far to Redis (or
        dropped it); False if ``timeout`` ran out first. Bulk producers call this every
        few hundred ``emit``s to give the sender its turn (backpressure)."""
        if self._loop is None or (self._sender_idle and not self._buffer):
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._flush_waiters.append(waiter)
        self._wake_sender()
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except TimeoutError:
            return False
        return True

    def _wake_sender(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _take_batch(self) -> list[_Outgoing]:
        with self._buffer_lock:
            batch: list[_Outgoing] = []
            while self._confirmed and len(batch) < MAX_BATCH:
                item = self._confirmed.popleft()
                if item.future is not None and item.future.done():
                    continue  # the caller gave up (timed out): do not store it late
                batch.append(item)
            while self._buffer and len(batch) < MAX_BATCH:
                batch.append(self._buffer.popleft())
            if not batch:
                self._sender_idle = True
        if not batch:
            waiters, self._flush_waiters = self._flush_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
        return batch

    async def _send_loop(self) -> None:
        assert self._wake is not None
        backoff = BACKOFF_MIN_S
        while True:
            await self._wake.wait()
            self._wake.clear()
            while batch := self._take_batch():
                try:
                    ok = await self._send_batch(batch)
                except Exception as exc:  # the sender must outlive any bug
                    logger.exception("sender: unexpected error; the batch is failed")
                    for item in batch:
                        self._reject(item, exc)
                    ok = False
                if ok:
                    backoff = BACKOFF_MIN_S
                else:
                    await asyncio.sleep(backoff * (0.5 + random.random() / 2))  # noqa: S311
                    backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _send_batch(self, batch: list[_Outgoing]) -> bool:
        assert self._client is not None
        commands: list[tuple[Any, ...]] = []
        firsts: list[int] = []
        kept: list[_Outgoing] = []
        for item in batch:
            start = len(commands)
            try:
                self._add_commands(commands, item)
            except Exception as exc:  # noqa: BLE001  # one bad item must not stop the sender
                del commands[start:]
                self._reject(item, exc)
                continue
            firsts.append(start)
            kept.append(item)
        batch = kept
        if not batch:
            return True
        try:
            replies = await self._execute(commands)
        except (rexc.RedisError, OSError) as exc:
            self._indexed.clear()  # Redis may have lost the index (restart without AOF)
            error = translate_redis_error(exc, action="publish", url=self.url)
            lost = self._requeue_durable(batch)
            logger.warning("Redis did not take %d events (%d fan-out-only dropped): %s",
                           len(batch), lost, error)
            for item in batch:
                if item.future is not None and not item.future.done():
                    item.future.set_exception(error)
            return False
        self.stats.incr("sent_remote", len(batch))
        for item, first in zip(batch, firsts, strict=True):
            if item.future is not None and not item.future.done():
                item.future.set_result(replies[first] if first < len(replies) else None)
        return True

    async def _execute(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send ``commands`` in one write and read every reply (raises on any error).

        On a real Redis the commands are packed by hiredis (C) and written on one pooled
        connection: redis-py's pipeline packs in Python, which was half the sender's
        cost. memory:// (fakeredis) takes the ordinary pipeline.
        """
        assert self._client is not None
        if self._fake:
            return await self._execute_fake(commands)
        connection = self._connection
        if connection is None:  # held by the sender for its life; reconnects by itself
            pool = self._client.connection_pool
            connection = await pool.get_connection()  # type: ignore[no-untyped-call]
            self._connection = connection
        try:
            if not connection.is_connected:
                # connect() (not send_packed_command's own reconnect) is what asks a
                # Sentinel for the current primary after a failover.
                await connection.connect()
            await connection.send_packed_command(
                b"".join(hiredis.pack_command(command) for command in commands),
                check_health=False,
            )
            replies = []
            for _ in commands:
                reply = await connection.read_response()
                if isinstance(reply, rexc.ResponseError):
                    raise reply
                if isinstance(reply, list):  # an EXEC: any failed command fails the batch
                    for inner in reply:
                        if isinstance(inner, rexc.ResponseError):
                            raise inner
                replies.append(reply)
        except BaseException:
            await connection.disconnect()  # the reply stream is out of step now
            raise
        return replies

    async def _execute_fake(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """memory://: redis-py pipelines; MULTI ... EXEC runs as a transactional one."""
        assert self._client is not None
        replies: list[Any] = []
        index = 0
        while index < len(commands):
            if commands[index][0] == "MULTI":
                end = commands.index(("EXEC",), index)
                block = self._client.pipeline(transaction=True)
                for command in commands[index + 1:end]:
                    block.execute_command(*command)
                replies.append("OK")
                replies.extend("QUEUED" for _ in commands[index + 1:end])
                replies.append(list(await block.execute()))
                index = end + 1
                continue
            plain = self._client.pipeline(transaction=False)
            stop = index
            while stop < len(commands) and commands[stop][0] != "MULTI":
                plain.execute_command(*commands[stop])
                stop += 1
            replies.extend(await plain.execute())
            index = stop
        return replies

    def _add_commands(self, commands: list[tuple[Any, ...]], item: _Outgoing) -> None:
        if item.atomic is not None:
            commands.append(("MULTI",))
            for member in item.atomic:
                self._add_commands(commands, member)
            commands.append(("EXEC",))
            return
        event = item.event
        if event is None:  # a bare UI frame
            commands.append(self._ui_command(item.chat_id or "", item.payload))
            return
        type_name = event.type
        if item.scopes & Scope.UI and event.subject:
            commands.append(self._ui_command(event.subject, ui_frame(event)))
        if item.scopes & Scope.DURABLE:
            commands.append((
                "XADD", self.keys.stream(type_name), "MAXLEN", "~",
                self.settings.stream_hard_max_len, "*", FIELD_EVENT, item.payload,
            ))
            now = time.monotonic()
            if now - self._indexed.get(type_name, -INDEX_REFRESH_S) >= INDEX_REFRESH_S:
                self._indexed[type_name] = now
                commands.append(("SADD", self.keys.stream_index(), type_name))
        if item.scopes & Scope.FANOUT:
            channel = self._channels.get(type_name)
            if channel is None:
                channel = self._channels[type_name] = self.keys.fanout_channel(type_name)
            commands.append(("PUBLISH", channel, self._origin_text + item.payload))

    def _ui_command(self, chat_id: str, frame: str) -> tuple[Any, ...]:
        return (
            "EVAL", UI_APPEND_SCRIPT, 2, self.keys.ui_history(chat_id),
            self.keys.ui_channel(chat_id), self.settings.ui_history_max_len,
            int(self.settings.ui_history_ttl_s), frame,
        )

    def _reject(self, item: _Outgoing, exc: Exception) -> None:
        """An item that cannot even be turned into commands: fail it, never retry it."""
        logger.error("could not send %s: %s", item.event.id if item.event else "a ui frame",
                     exc)
        if item.future is not None and not item.future.done():
            item.future.set_exception(exc)
        else:
            self.stats.incr("dropped_remote")

    def _requeue_durable(self, batch: list[_Outgoing]) -> int:
        """After a failed batch: emitted durable events go back to the front of the
        buffer (at least once; the event id dedupes); fan-out-only ones are dropped (at
        most once: Redis may have published them before the link failed). Returns how
        many were dropped."""
        dropped = 0
        with self._buffer_lock:
            for item in reversed(batch):
                if item.future is not None:
                    continue
                if item.scopes & Scope.DURABLE and \
                        len(self._buffer) < self.settings.emit_buffer_size:
                    self._buffer.appendleft(item)
                else:
                    dropped += 1
        if dropped:
            self.stats.incr("dropped_remote", dropped)
        return dropped

    def _fail_confirmed(self, error: BaseException) -> None:
        with self._buffer_lock:
            pending, self._confirmed = list(self._confirmed), deque()
        for item in pending:
            if item.future is not None and not item.future.done():
                item.future.set_exception(error)

    # -- receiving ----------------------------------------------------------------------

    def _on_message(self, message: dict[str, Any]) -> None:
        channel: bytes = message["channel"]
        if message["type"] == "message":
            handler = self._channel_handlers.get(channel.decode())
            if handler is not None:
                handler(message["data"])
            return
        raw: bytes = message["data"]
        if raw.startswith(self._origin_prefix):
            return  # our own event: delivered locally when it was emitted
        type_name = channel[len(self._channel_prefix):].decode()
        if not self._first_matching_pattern_is(type_name, message["pattern"]):
            return
        sep = raw.find(b"|")
        try:
            event = Event.from_wire(raw[sep + 1:])
        except InvalidEvent as exc:
            logger.warning("dropped a malformed fan-out message on %r: %s", channel, exc)
            return
        if self._deliver is not None:
            self._deliver(event)

    def _first_matching_pattern_is(self, type_name: str, pattern: bytes | str) -> bool:
        """With overlapping patterns Redis sends one copy per pattern: keep one."""
        watched = self._watched
        if len(watched) == 1:
            return True
        received = pattern.decode() if isinstance(pattern, bytes) else pattern
        for candidate in sorted(watched):
            if compile_pattern(candidate).matches(type_name):
                return self._channel_pattern(candidate) == received
        return False

    def _on_reconnect(self, down_s: float) -> None:
        self.stats.incr("reconnects")
        if self._deliver is None:
            return
        event = Event.create(
            RECONNECTED_EVENT, {"reconnects": self.stats.get("reconnects"), "down_s": down_s},
            source=self.settings.service,
        )
        self._deliver(event)

    # -- exact channels (the ui scope, control messages) ----------------------------------

    def subscribe_channel(self, channel: str, handler: Callable[[bytes], None]) -> None:
        """Call ``handler(raw)`` for each message on ``channel`` (one handler a channel)."""
        self._channel_handlers[channel] = handler
        self.listener.add(channel, pattern=False)

    def unsubscribe_channel(self, channel: str) -> None:
        """Stop receiving ``channel``."""
        self._channel_handlers.pop(channel, None)
        self.listener.remove(channel, pattern=False)

    def health(self) -> dict[str, object]:
        """``listener``: idle | connecting | receiving | reconnecting | stopped."""
        return {
            "transport": "redis",
            "url": redact_url(self.url),
            **self.listener.health(),
            "buffered": len(self._buffer),
            "reconnects": self.stats.get("reconnects"),
            "dropped_remote": self.stats.get("dropped_remote"),
        }


def ui_frame(event: Event) -> str:
    """The platform's UI envelope for a CloudEvent of the ui scope (JSON).

    ``{"type", "data", "timestamp", "agent"}`` with ``agent`` taken from ``data.agent``
    or ``data.sender`` (else "Agent"), as the platform's transport adds it at flush.
    """
    data = event.data
    agent = data.get("agent") or data.get("sender") or "Agent"
    return _FRAME_ENCODER.encode({
        "type": event.type, "data": data, "timestamp": format_time(event.time),
        "agent": agent if isinstance(agent, str) else "Agent", "event_id": event.id,
    })
