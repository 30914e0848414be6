"""What the sender writes: each outgoing item as Redis commands, and how replies are read.

An event becomes ``PUBLISH <channel> <origin>|<json>`` (fan-out), ``XADD <stream> MAXLEN ~
<hard cap> * e <json>`` plus, every :data:`INDEX_REFRESH_S` per type, ``SADD`` of the
stream index (durable, or a type some consumer group declared interest in:
:mod:`mozaiks_bus.interest`), and the ui script (ui); an atomic group is wrapped in
``MULTI``/``EXEC``. On ``memory://`` the same commands run through redis-py pipelines.
"""

from __future__ import annotations

import time
from typing import Any, TypeVar

import fakeredis
from redis import exceptions as rexc
from redis.asyncio import Redis

from mozaiks_bus.connection.exchange import connect, exchange
from mozaiks_bus.errors import TransportError
from mozaiks_bus.frames import event_frame
from mozaiks_bus.interest import Interest
from mozaiks_bus.keys import ENTRY_EVENT, Keys
from mozaiks_bus.routing import scope_parts
from mozaiks_bus.settings import BusSettings
from mozaiks_bus.transports.redis.items import AtomicItem, CommandItem, EventItem, Outgoing
from mozaiks_bus.transports.redis.ui import ui_append_command

__all__ = ["INDEX_REFRESH_S", "CommandBuilder", "HeldConnection", "PartialBatch",
           "execute_pipelined", "raise_if_error"]

T = TypeVar("T")
INDEX_REFRESH_S = 30.0  # how often a type's membership in the stream index is re-sent


class PartialBatch(TransportError):
    """Some commands of a batch got an error reply or were lost with their node (a
    cluster): ``replies`` holds one entry per command, the exception where it failed."""

    def __init__(self, replies: list[Any]) -> None:
        failed = sum(isinstance(reply, BaseException) for reply in replies)
        super().__init__(f"{failed} of {len(replies)} commands of a batch failed")
        self.replies = replies

    def first_error(self, start: int, stop: int) -> BaseException | None:
        """The first failure among the replies ``start:stop`` (EXEC lists included)."""
        for reply in self.replies[start:stop]:
            if isinstance(reply, BaseException):
                return reply
            if isinstance(reply, list):
                for inner in reply:
                    if isinstance(inner, BaseException):
                        return inner
        return None

    def split(self, items: list[T], firsts: list[int], total: int
              ) -> tuple[list[tuple[T, int]], list[T], BaseException | None]:
        """Items whose commands (from ``firsts[i]`` to the next item's) all succeeded,
        with their first command's index; the items that failed; the first failure."""
        done: list[tuple[T, int]] = []
        failed: list[T] = []
        first_failure: BaseException | None = None
        for item, first, end in zip(items, firsts, [*firsts[1:], total], strict=True):
            error = self.first_error(first, end)
            if error is None:
                done.append((item, first))
                continue
            failed.append(item)
            first_failure = first_failure or error
        return done, failed, first_failure


class CommandBuilder:
    """Turns :class:`Outgoing` items into commands; caches channel names per type."""

    def __init__(self, keys: Keys, settings: BusSettings, origin: str) -> None:
        self.keys = keys
        self.settings = settings
        self._origin_text = f"{origin}|"
        self._channels: dict[str, str] = {}
        self._indexed: dict[str, float] = {}  # stream -> when its SADD to the index was sent
        self._partitions = settings.partitions
        self.interest = Interest()
        self._interest_version = keys.interest_version()

    def forget_index(self) -> None:
        """Send every type's index membership again with its next event."""
        self._indexed.clear()

    def add(self, commands: list[tuple[Any, ...]], item: Outgoing) -> None:
        """Append the commands that send ``item`` (raises for an item that cannot be sent)."""
        if isinstance(item, EventItem):
            self.add_event(commands, item)
        elif isinstance(item, AtomicItem):
            commands.append(("MULTI",))
            for member in item.members:
                self.add_event(commands, member)
            commands.extend(("SET", mark.key, mark.value, "EX", mark.ttl_s)
                            for mark in item.marks)
            commands.append(("EXEC",))
        elif isinstance(item, CommandItem):
            commands.append(item.command)
        else:
            commands.append(ui_append_command(self.keys, self.settings, item.chat_id,
                                              item.frame))

    def stores(self, type_name: str, durable: bool) -> bool:
        """Whether an event goes to its durable stream: its scopes say so (``durable``),
        or a consumer group declared interest in its type (:mod:`mozaiks_bus.interest`)."""
        return durable or self.interest.wants(type_name)

    def interest_probe(self) -> tuple[Any, ...]:
        """The command every pipeline starts with: the declared interest's version."""
        return ("GET", self._interest_version)

    def add_event(self, commands: list[tuple[Any, ...]], item: EventItem) -> None:
        """Append the commands of one event at its scopes (plus its durable stream when
        interest was declared for its type); records that in ``item.stored``."""
        event = item.event
        type_name = event.type
        parts = scope_parts(item.scopes)
        if parts.ui and event.subject:
            commands.append(ui_append_command(self.keys, self.settings, event.subject,
                                              event_frame(event)))
        item.stored = self.stores(type_name, parts.durable)
        if item.stored:
            self.add_stream_entry(commands, item)
        if parts.fanout:
            channel = self._channels.get(type_name)
            if channel is None:
                channel = self._channels[type_name] = self.keys.fanout_channel(type_name)
            commands.append(("PUBLISH", channel, self._origin_text + item.payload))

    def add_stream_entry(self, commands: list[tuple[Any, ...]], item: EventItem) -> None:
        """Append the ``XADD`` of ``item`` to its stream (and the index ``SADD`` when due)."""
        event = item.event
        stream = self._partitions.stream_name(event) if self._partitions.counts \
            else event.type
        commands.append((
            "XADD", self.keys.stream(stream), "MAXLEN", "~",
            self.settings.stream_hard_max_len, "*", ENTRY_EVENT, item.payload,
        ))
        now = time.monotonic()
        if now - self._indexed.get(stream, -INDEX_REFRESH_S) >= INDEX_REFRESH_S:
            self._indexed[stream] = now
            commands.append(("SADD", self.keys.stream_index(), stream))


def raise_if_error(reply: Any) -> None:
    """Raise the first error reply in ``reply`` (an EXEC reply holds one per command)."""
    if isinstance(reply, rexc.ResponseError):
        raise reply
    if isinstance(reply, list):  # an EXEC: any failed command fails the batch
        for inner in reply:
            if isinstance(inner, rexc.ResponseError):
                raise inner


async def execute_pipelined(client: Redis, commands: list[tuple[Any, ...]]) -> list[Any]:
    """memory://: redis-py pipelines; MULTI ... EXEC runs as a transactional one."""
    replies: list[Any] = []
    index = 0
    while index < len(commands):
        if commands[index][0] == "MULTI":
            end = commands.index(("EXEC",), index)
            block = client.pipeline(transaction=True)
            for command in commands[index + 1:end]:
                block.execute_command(*command)
            replies.append("OK")
            replies.extend("QUEUED" for _ in commands[index + 1:end])
            replies.append(list(await block.execute()))
            index = end + 1
            continue
        plain = client.pipeline(transaction=False)
        stop = index
        while stop < len(commands) and commands[stop][0] != "MULTI":
            plain.execute_command(*commands[stop])
            stop += 1
        replies.extend(await plain.execute())
        index = stop
    return replies


class HeldConnection:
    """The sender's executor on one Redis: every batch in one write on one connection
    held for the transport's life (reconnecting by itself), through the one RESP
    exchange (:mod:`mozaiks_bus.connection.exchange`); memory:// (fakeredis) takes the
    ordinary pipeline."""

    def __init__(self, client: Redis) -> None:
        self._client = client
        self._connection: Any = None

    async def execute(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """One reply per command; raises the first error reply (an EXEC's included),
        once every reply is read. A lost link or the deadline (the connection's
        ``socket_timeout``, plus a ``WAIT``'s own) drops the connection: its reply
        stream is out of step then."""
        if isinstance(self._client, fakeredis.FakeAsyncRedis):
            return await execute_pipelined(self._client, commands)
        connection = self._connection
        if connection is None:
            pool = self._client.connection_pool
            connection = await pool.get_connection()  # type: ignore[no-untyped-call]
            self._connection = connection
        try:
            await connect(connection)
        except BaseException:
            await connection.disconnect()
            raise
        replies = await exchange(connection, commands, timeout_s=connection.socket_timeout)
        for reply in replies:
            raise_if_error(reply)
        return replies

    async def release(self) -> None:
        """Give the held connection back to the client's pool."""
        if self._connection is not None:
            await self._client.connection_pool.release(self._connection)
        self._connection = None
