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
import contextlib
import logging
import random
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import fakeredis
import hiredis
from redis import exceptions as rexc
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from .connection import create_async_client, redact_url, translate_redis_error
from .errors import InvalidEvent
from .event import Event
from .keys import Keys
from .patterns import compile_pattern
from .routing import Scope
from .settings import BusSettings
from .stats import BusStats
from .streams import FIELD_EVENT
from .transport import RemoteDeliver

__all__ = ["RECONNECTED_EVENT", "RedisTransport"]

logger = logging.getLogger("mozaiks_bus.redis")
RECONNECTED_EVENT = "bus.fanout_reconnected"
MAX_BATCH = 512
BACKOFF_MIN_S = 0.05
BACKOFF_MAX_S = 2.0
INDEX_REFRESH_S = 30.0  # how often a type's membership in the stream index is re-sent


@dataclass(slots=True)
class _Outgoing:
    event: Event
    payload: str
    scopes: Scope
    future: asyncio.Future[None] | None = None


@dataclass(slots=True)
class _ListenerState:
    status: str = "idle"  # idle | connecting | receiving | reconnecting | stopped
    last_message_at: float = field(default_factory=time.monotonic)
    down_since: float | None = None
    patterns: dict[str, int] = field(default_factory=dict)


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
        self._listener = _ListenerState()
        self._pubsub: PubSub | None = None
        self._stopping = False
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
        self._stopping = False
        self._client = create_async_client(
            self.url, client_name=f"mozaiks-bus:{self.settings.service}:send",
            retries=0,
        )
        self._fake = isinstance(self._client, fakeredis.FakeAsyncRedis)
        self._tasks = [
            asyncio.create_task(self._send_loop(), name="mozaiks-bus-sender"),
            asyncio.create_task(self._listen_loop(), name="mozaiks-bus-listener"),
        ]
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
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self._fail_confirmed(RuntimeError("the transport stopped"))
        self._listener.status = "stopped"
        if self._connection is not None and self._client is not None:
            await self._client.connection_pool.release(self._connection)
            self._connection = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- watching -----------------------------------------------------------------------

    def watch(self, pattern: str) -> None:
        """Receive fan-out events matching ``pattern`` (PSUBSCRIBE once per pattern)."""
        with self._buffer_lock:  # copy-on-write: readers iterate a stable snapshot
            patterns = dict(self._listener.patterns)
            patterns[pattern] = patterns.get(pattern, 0) + 1
            self._listener.patterns = patterns
        if patterns[pattern] == 1:
            self._call_on_loop(self._resubscribe_soon)

    def unwatch(self, pattern: str) -> None:
        """Release one reference; PUNSUBSCRIBE when the last one goes."""
        with self._buffer_lock:
            patterns = dict(self._listener.patterns)
            if pattern not in patterns:
                return
            patterns[pattern] -= 1
            last = patterns[pattern] <= 0
            if last:
                del patterns[pattern]
            self._listener.patterns = patterns
        if last:
            self._call_on_loop(self._resubscribe_soon)

    def _resubscribe_soon(self) -> None:
        pubsub = self._pubsub
        if pubsub is None or self._listener.status != "receiving":
            return  # the listener subscribes to the current set when it (re)connects
        wanted = {self._channel_pattern(p) for p in self._listener.patterns}
        current = {p.decode() if isinstance(p, bytes) else p for p in pubsub.patterns}

        async def apply() -> None:
            try:
                if wanted - current:
                    await pubsub.psubscribe(*(wanted - current))
                if current - wanted:
                    await pubsub.punsubscribe(*(current - wanted))
            except (rexc.RedisError, OSError) as exc:
                logger.info("re-subscribing failed (%s); the listener will reconnect", exc)

        asyncio.get_running_loop().create_task(apply())

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
            self._call_on_loop(self._wake_sender)

    async def send(self, event: Event, payload: str, scopes: Scope) -> None:
        """Send ``event`` in the next pipeline and wait for Redis's reply."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._buffer_lock:
            self._confirmed.append(_Outgoing(event, payload, scopes, future))
            self._sender_idle = False
        self._wake_sender()
        await future

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

    def _call_on_loop(self, callback: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            callback()
        else:
            loop.call_soon_threadsafe(callback)

    def _take_batch(self) -> list[_Outgoing]:
        with self._buffer_lock:
            batch: list[_Outgoing] = []
            while self._confirmed and len(batch) < MAX_BATCH:
                batch.append(self._confirmed.popleft())
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
                ok = await self._send_batch(batch)
                if ok:
                    backoff = BACKOFF_MIN_S
                else:
                    await asyncio.sleep(backoff * (0.5 + random.random() / 2))  # noqa: S311
                    backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _send_batch(self, batch: list[_Outgoing]) -> bool:
        assert self._client is not None
        commands: list[tuple[Any, ...]] = []
        for item in batch:
            self._add_commands(commands, item)
        try:
            await self._execute(commands)
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
        for item in batch:
            if item.future is not None and not item.future.done():
                item.future.set_result(None)
        return True

    async def _execute(self, commands: list[tuple[Any, ...]]) -> None:
        """Send ``commands`` in one write and read every reply (raises on any error).

        On a real Redis the commands are packed by hiredis (C) and written on one pooled
        connection: redis-py's pipeline packs in Python, which was half the sender's
        cost. memory:// (fakeredis) takes the ordinary pipeline.
        """
        assert self._client is not None
        if self._fake:
            pipe = self._client.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command)
            await pipe.execute()
            return
        connection = self._connection
        if connection is None:  # held by the sender for its life; reconnects by itself
            pool = self._client.connection_pool
            connection = await pool.get_connection()  # type: ignore[no-untyped-call]
            self._connection = connection
        try:
            await connection.send_packed_command(
                b"".join(hiredis.pack_command(command) for command in commands),
                check_health=False,
            )
            for _ in commands:
                reply = await connection.read_response()
                if isinstance(reply, rexc.ResponseError):
                    raise reply
        except BaseException:
            await connection.disconnect()  # the reply stream is out of step now
            raise

    def _add_commands(self, commands: list[tuple[Any, ...]], item: _Outgoing) -> None:
        type_name = item.event.type
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

    async def _listen_loop(self) -> None:
        backoff = BACKOFF_MIN_S
        state = self._listener
        while not self._stopping:
            if not state.patterns:
                state.status = "idle"
                await asyncio.sleep(0.05)
                continue
            try:
                await self._listen_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001  # any failure: reconnect, bounded
                if state.down_since is None:
                    state.down_since = time.monotonic()
                state.status = "reconnecting"
                logger.warning("fan-out listener lost its link to %s: %s",
                               redact_url(self.url), exc)
                await asyncio.sleep(backoff * (0.5 + random.random() / 2))  # noqa: S311
                backoff = min(backoff * 2, BACKOFF_MAX_S)
            else:
                backoff = BACKOFF_MIN_S

    async def _listen_once(self) -> None:
        state = self._listener
        state.status = "reconnecting" if state.down_since is not None else "connecting"
        interval = self.settings.health_check_interval_s
        client = create_async_client(
            self.url, client_name=f"mozaiks-bus:{self.settings.service}:listen",
            socket_timeout=None, socket_connect_timeout=interval, retries=0,
        )
        pubsub = client.pubsub(ignore_subscribe_messages=False)
        try:
            patterns = [self._channel_pattern(p) for p in state.patterns]
            await asyncio.wait_for(pubsub.psubscribe(*patterns), interval * 2)
            self._pubsub = pubsub
            self._on_connected()
            await self._read_messages(pubsub, interval)
        finally:
            self._pubsub = None
            await _close_quietly(pubsub, client)

    def _on_connected(self) -> None:
        state = self._listener
        state.status = "receiving"
        state.last_message_at = time.monotonic()
        if state.down_since is not None:
            down = time.monotonic() - state.down_since
            state.down_since = None
            self.stats.incr("reconnects")
            logger.warning("fan-out listener reconnected after %.2fs", down)
            self._announce_reconnect(down)
        # patterns may have changed while connecting
        self._resubscribe_soon()

    async def _read_messages(self, pubsub: PubSub, interval: float) -> None:
        """Read until the link fails: a reader blocks on the socket (no per-message
        timer), a watchdog PINGs a silent link and fails it when no reply is read."""
        reader = asyncio.create_task(self._reader(pubsub))
        watchdog = asyncio.create_task(self._watchdog(pubsub, interval))
        try:
            done, _ = await asyncio.wait({reader, watchdog}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # re-raises what ended the link
        finally:
            for task in (reader, watchdog):
                task.cancel()
            await asyncio.gather(reader, watchdog, return_exceptions=True)

    async def _reader(self, pubsub: PubSub) -> None:
        state = self._listener
        on_message = self._on_message
        while not self._stopping:
            message = await pubsub.get_message(timeout=None)
            state.last_message_at = time.monotonic()
            if message is not None and message["type"] == "pmessage":
                on_message(message)

    async def _watchdog(self, pubsub: PubSub, interval: float) -> None:
        state = self._listener
        ping_sent_at: float | None = None
        while not self._stopping:
            await asyncio.sleep(interval / 4)
            now = time.monotonic()
            if ping_sent_at is not None and state.last_message_at >= ping_sent_at:
                ping_sent_at = None  # something (the PONG, or a message) was read
            if ping_sent_at is not None and now - ping_sent_at > interval:
                raise ConnectionError(f"no reply to PING within {interval}s: the link is dead")
            if ping_sent_at is None and now - state.last_message_at > interval:
                await pubsub.ping()
                ping_sent_at = time.monotonic()

    def _on_message(self, message: dict[str, Any]) -> None:
        raw: bytes = message["data"]
        if raw.startswith(self._origin_prefix):
            return  # our own event: delivered locally when it was emitted
        channel: bytes = message["channel"]
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
        patterns = self._listener.patterns
        if len(patterns) == 1:
            return True
        received = pattern.decode() if isinstance(pattern, bytes) else pattern
        for candidate in sorted(patterns):
            if compile_pattern(candidate).matches(type_name):
                return self._channel_pattern(candidate) == received
        return False

    def _announce_reconnect(self, down_s: float) -> None:
        if self._deliver is None:
            return
        event = Event.create(
            RECONNECTED_EVENT, {"reconnects": self.stats.get("reconnects"), "down_s": down_s},
            source=self.settings.service,
        )
        self._deliver(event)

    def health(self) -> dict[str, object]:
        """``listener``: idle | connecting | receiving | reconnecting | stopped."""
        state = self._listener
        return {
            "transport": "redis",
            "url": redact_url(self.url),
            "listener": state.status,
            "receiving": state.status in {"receiving", "idle"},
            "last_message_age_s": round(time.monotonic() - state.last_message_at, 3),
            "buffered": len(self._buffer),
            "reconnects": self.stats.get("reconnects"),
            "dropped_remote": self.stats.get("dropped_remote"),
        }


async def _close_quietly(pubsub: PubSub, client: Redis) -> None:
    for closer in (pubsub.aclose, client.aclose):
        with contextlib.suppress(rexc.RedisError, OSError, TimeoutError):
            await asyncio.wait_for(closer(), 1.0)
