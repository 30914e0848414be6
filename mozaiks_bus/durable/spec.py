"""What ``@bus.consumer`` registers: the :class:`ConsumerSpec` and its defaults, and the
:class:`Delivery` a handler may take as its second argument."""

from __future__ import annotations

import inspect
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.client import Pipeline

from mozaiks_bus.connection import AsyncClient
from mozaiks_bus.errors import InvalidEvent
from mozaiks_bus.event import Event
from mozaiks_bus.keys import Keys
from mozaiks_bus.patterns import compile_pattern
from mozaiks_bus.retry import RetryPolicy

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_MAX_DELIVERIES",
    "DEFAULT_READ_COUNT",
    "PREFETCH_MAX",
    "READ_MAX",
    "ConsumerHandler",
    "ConsumerSpec",
    "Delivery",
    "default_consumer_name",
    "default_prefetch",
]

ConsumerHandler = Callable[..., Any]
DEFAULT_CONCURRENCY = 4
DEFAULT_MAX_DELIVERIES = 5
DEFAULT_READ_COUNT = 100  # entries one XREADGROUP asks for, whatever the concurrency
READ_MAX = 1000
PREFETCH_MAX = 10_000


def default_prefetch(read_count: int = DEFAULT_READ_COUNT, concurrency: int = 1) -> int:
    """Entries a consumer holds at most by default: two reads' worth (one being handled
    while the next is read), and never fewer than one per worker."""
    return max(2 * read_count, concurrency)


def default_consumer_name(service: str) -> str:
    """``<service>-<hostname>-<pid>``: unique on a host, stable for the process's life."""
    return f"{service}-{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    """What ``@bus.consumer`` registered."""

    pattern: str
    group: str
    handler: ConsumerHandler
    concurrency: int = DEFAULT_CONCURRENCY
    prefetch: int | None = None  # None: default_prefetch(read_count, concurrency)
    read_count: int = DEFAULT_READ_COUNT
    max_deliveries: int = DEFAULT_MAX_DELIVERIES
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    guard: bool = False
    start: str = "0"

    def __post_init__(self) -> None:
        compile_pattern(self.pattern)
        Keys.group(self.group)
        if self.concurrency < 1:
            raise InvalidEvent("concurrency", "must be at least 1", value=self.concurrency)
        if self.prefetch is not None and not self.concurrency <= self.prefetch <= PREFETCH_MAX:
            raise InvalidEvent("prefetch", f"must be from concurrency to {PREFETCH_MAX}",
                               value=self.prefetch)
        if not 1 <= self.read_count <= READ_MAX:
            raise InvalidEvent("read_count", f"must be from 1 to {READ_MAX}",
                               value=self.read_count)
        if self.max_deliveries < 1:
            raise InvalidEvent("max_deliveries", "must be at least 1", value=self.max_deliveries)

    @property
    def held_at_most(self) -> int:
        """How many entries one consumer reads ahead and holds (handled or waiting)."""
        return self.prefetch or default_prefetch(self.read_count, self.concurrency)

    @property
    def read_size(self) -> int:
        """Entries one read asks for at most: ``read_count``, within the prefetch."""
        return min(self.read_count, self.held_at_most)

    @property
    def wants_delivery(self) -> bool:
        """Whether the handler takes a second required (Delivery) parameter."""
        try:
            params = list(inspect.signature(self.handler).parameters.values())
        except (TypeError, ValueError):
            return False
        required = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                    and p.default is p.empty]
        return len(required) >= 2


@dataclass(slots=True)
class Delivery:
    """One delivery of one event to one group (the handler's optional second argument)."""

    event: Event
    type: str
    stream_id: str
    group: str
    consumer: str
    deliveries: int
    _client: AsyncClient
    _tx: Pipeline | None = None
    stream: str = ""  # the stream name: the type, or its partition (mozaiks_bus.partitions)

    @property
    def tx(self) -> Pipeline:
        """A MULTI pipeline executed atomically with the ack (keys must share the type's
        hash tag ``{<type>}`` on Redis Cluster). Queue commands on it; never execute
        it: the consumer does, with the ack."""
        if self._tx is None:
            client = _RECORDER if isinstance(self._client, RedisCluster) else self._client
            self._tx = client.pipeline(transaction=True)
        return self._tx

    def queued(self) -> list[tuple[Any, Any]]:
        """What the handler queued on :attr:`tx`, as ``(args, options)`` per command."""
        return [] if self._tx is None else list(self._tx.command_stack)


# On a cluster, tx only records (the consumer commits by hand, in one slot:
# mozaiks_bus.connection.transactions); a cluster pipeline would run each queued command in a
# thread. This client never connects: nothing is executed through it.
_RECORDER = Redis()
