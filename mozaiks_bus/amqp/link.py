"""The bridge's link to RabbitMQ: connect (waiting while it is away), declare, publish.

:class:`RabbitLink` holds one robust aio-pika connection with two channels: one with
publisher confirms for everything the bridge publishes, one consuming the bridge's
queue with a prefetch. The first connect is retried with backoff forever (logging
``waiting for RabbitMQ at ... (the MassTransit bridge): why``); later losses are
recovered by aio-pika's robust connection, which redeclares the topology and resumes
consuming. :meth:`publish` waits while the link is down (so an outage uses no
delivery attempt) and raises :class:`~mozaiks_bus.errors.PublishFailed` when RabbitMQ
refused a message or the link broke while it was in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aio_pika
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage, AbstractRobustConnection
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError

from mozaiks_bus.amqp.contracts import Contract
from mozaiks_bus.amqp.topology import Topology, declare_topology
from mozaiks_bus.connection import redact_url
from mozaiks_bus.errors import PublishFailed
from mozaiks_bus.retry import Backoff

__all__ = ["AMQP_ERRORS", "RabbitLink", "probe"]

logger = logging.getLogger("mozaiks_bus.amqp")
AMQP_ERRORS: tuple[type[BaseException], ...] = (AMQPError, OSError, TimeoutError,
                                                ConnectionError, RuntimeError)
"""What aio-pika raises when RabbitMQ is away or refuses (RuntimeError: a closed channel)."""
CHANNEL_WAIT_S = 30.0  # a closed channel is waited for this long before it is a failure

OnMessage = Callable[[AbstractIncomingMessage], Awaitable[None]]


class RabbitLink:
    """See the module docstring."""

    def __init__(self, url: str, contracts: Sequence[Contract], *, queue: str,
                 declare_endpoints: bool, prefetch: int, name: str,
                 publish_timeout_s: float) -> None:
        self.url = url
        self.contracts = contracts
        self.queue = queue
        self.declare_endpoints = declare_endpoints
        self.prefetch = prefetch
        self.name = name
        self.publish_timeout_s = publish_timeout_s
        self.last_error: str | None = None
        self.reconnects = 0
        self.topology: Topology | None = None
        self._connection: AbstractRobustConnection | None = None
        self._declared = asyncio.Event()
        self._stopping = False
        self._consumer_tag: str | None = None

    @property
    def connected(self) -> bool:
        """Whether the topology is declared and the connection is up now."""
        connection = self._connection
        return (self._declared.is_set() and connection is not None
                and connection.connected.is_set())

    @property
    def down(self) -> bool:
        """Whether a connection existed and is lost now (a publish should wait)."""
        connection = self._connection
        return connection is not None and not connection.connected.is_set()

    async def connect(self, on_message: OnMessage) -> None:
        """Connect, declare, consume the bridge's queue into ``on_message``; retried
        with backoff until it worked (cancel the task to give up)."""
        backoff = Backoff(0.2, 5.0)
        shown = redact_url(self.url)
        while True:
            try:
                connection = await aio_pika.connect_robust(
                    self.url, reconnect_interval=1.0, timeout=10,
                    client_properties={"connection_name": f"mozaiks-bus bridge {self.name}"},
                )
            except AMQP_ERRORS as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.warning("waiting for RabbitMQ at %s (the MassTransit bridge): %s",
                               shown, self.last_error)
                await backoff.sleep()
                continue
            try:
                await self._declare(connection, on_message)
            except AMQP_ERRORS as exc:  # e.g. 406: an entity exists with other flags
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.error("MassTransit bridge could not declare its topology on %s: %s",
                             shown, self.last_error)
                with contextlib.suppress(*AMQP_ERRORS):
                    await connection.close()
                await backoff.sleep()
                continue
            self.last_error = None
            logger.info("MassTransit bridge connected to %s (queue %s)", shown, self.queue)
            return

    async def _declare(self, connection: AbstractRobustConnection,
                       on_message: OnMessage) -> None:
        publish = await connection.channel(publisher_confirms=True)
        topology = await declare_topology(publish, self.contracts, queue=self.queue,
                                          declare_endpoints=self.declare_endpoints)
        consume = await connection.channel()
        await consume.set_qos(prefetch_count=self.prefetch)
        queue = await consume.declare_queue(self.queue, durable=True, exclusive=False,
                                            auto_delete=False)
        self._consumer_tag = await queue.consume(on_message)
        topology.queue = queue  # the consuming channel's handle, for cancel()
        connection.close_callbacks.add(self._on_lost)
        connection.reconnect_callbacks.add(self._on_found)
        self._connection, self.topology = connection, topology
        self._declared.set()

    def _on_lost(self, *_args: Any) -> None:
        if not self._stopping:
            self.last_error = "connection to RabbitMQ lost"
            logger.warning("MassTransit bridge lost RabbitMQ: reconnecting")

    def _on_found(self, *_args: Any) -> None:
        self.reconnects += 1
        self.last_error = None
        logger.info("MassTransit bridge reconnected to RabbitMQ")

    async def publish(self, exchange_of: Callable[[Topology], AbstractExchange],
                      message: aio_pika.Message, what: str) -> None:
        """Publish ``message`` and wait for RabbitMQ's confirm (see the module docstring).

        A link that is down, or a channel closed under it (a broker going away closes
        the channels first, and the robust connection reopens them), is waited for
        without using an attempt; a channel that stays closed longer than
        :data:`CHANNEL_WAIT_S` while the connection is up counts as a failed attempt."""
        backoff = Backoff(0.05, 1.0)
        closed_since: float | None = None
        while True:
            await self._declared.wait()
            assert self._connection is not None
            assert self.topology is not None
            await self._connection.connected.wait()
            try:
                await exchange_of(self.topology).publish(message, routing_key="",
                                                         timeout=self.publish_timeout_s)
                return
            except AMQP_ERRORS as exc:
                if self._stopping:
                    raise PublishFailed(f"{what} not confirmed: the bridge is stopping") \
                        from None
                if self.down:
                    continue  # the link dropped mid-publish: wait for it, no attempt used
                if isinstance(exc, ChannelInvalidStateError):
                    now = time.monotonic()
                    closed_since = closed_since if closed_since is not None else now
                    if now - closed_since < CHANNEL_WAIT_S:
                        await backoff.sleep()
                        continue
                raise PublishFailed(f"RabbitMQ did not confirm {what}: "
                                    f"{type(exc).__name__}: {exc}") from None

    async def stop_consuming(self) -> None:
        """Stop taking messages from the bridge's queue (unacked ones go back)."""
        self._stopping = True
        if self.topology is not None and self._consumer_tag is not None:
            with contextlib.suppress(*AMQP_ERRORS):
                await self.topology.queue.cancel(self._consumer_tag)

    async def close(self) -> None:
        """Close the connection."""
        self._stopping = True
        if self._connection is not None:
            with contextlib.suppress(*AMQP_ERRORS):
                await self._connection.close()


async def probe(url: str, timeout_s: float = 5.0) -> str:
    """Connect once and say what answered (``RabbitMQ 3.12.1``); raises what aio-pika
    raises when nothing does (``doctor`` shows it)."""
    connection = await aio_pika.connect(url, timeout=timeout_s)
    try:
        properties = connection.transport.connection.server_properties \
            if connection.transport is not None else {}
        product = properties.get("product", "AMQP server")
        version = properties.get("version", "")
        as_text = [value.decode() if isinstance(value, bytes) else str(value)
                   for value in (product, version)]
        return " ".join(part for part in as_text if part)
    finally:
        await connection.close()
