"""The MassTransit bridge: durable bus events to RabbitMQ and .NET messages to the bus.

Contract
--------
``MassTransitBridge(settings)`` runs beside the sink worker (``mozaiks-bus worker`` and
``up`` start it when ``amqp_url`` is set). It owns a :class:`~mozaiks_bus.Bus`.

**Outbound, at least once.** Its consumer group (``keys.bridge_group()``) reads the
stream of every outbound contract; each event is published as a MassTransit envelope
(:mod:`.envelope`) to the contract's exchange on a channel with publisher confirms, and
the stream entry is acked only after RabbitMQ confirmed it. While RabbitMQ is
unreachable a delivery waits for the connection without using an attempt, so an outage
of any length loses nothing; a publish RabbitMQ refuses (a nack, a closed channel) or
that times out is retried with backoff and, after ``amqp_max_deliveries`` attempts,
dead-lettered like any durable delivery (``mozaiks-bus dlq replay``). Data that does
not satisfy the contract's model is dead-lettered at once. Events that came in from
RabbitMQ (extension ``bridgedfrom=amqp``) are not sent back out.

**Inbound, at least once.** Its queue (:mod:`.topology`) receives the inbound
contracts' messages; each envelope becomes a bus event of the contract's type (id = the
``messageId``) published durably, and the AMQP message is acked only after the bus
confirmed the publish; while Redis cannot take it the message is held and the publish
retried with backoff (on shutdown it goes back to the queue). An envelope that cannot be
read, or whose data the catalog model rejects, is moved to ``<queue>_error`` with the
reason in MassTransit's fault headers; one of no inbound type to ``<queue>_skipped``.
Nothing is dropped silently. Messages the bridge itself published (header
``MozaiksBus-Origin``) are acked and not taken in again.

Every few seconds it reports its state to Redis (:mod:`.status`), which ``status`` and
``GET /v1/sinks`` show.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aio_pika
from aio_pika.abc import (
    AbstractIncomingMessage,
)

from mozaiks_bus import tracing
from mozaiks_bus._loop import cancel_and_wait
from mozaiks_bus.amqp.contracts import Contract, bridge_queue, contracts_for
from mozaiks_bus.amqp.envelope import (
    BRIDGED_EXTENSION,
    CONTENT_TYPE,
    ORIGIN_HEADER,
    EnvelopeError,
    UnknownMessageType,
    from_envelope,
    host_info,
    to_envelope,
)
from mozaiks_bus.amqp.link import AMQP_ERRORS, RabbitLink
from mozaiks_bus.amqp.status import COUNTERS, record_bridge_start, state_ttl_s
from mozaiks_bus.bus import Bus
from mozaiks_bus.connection import AsyncClient, create_sync_client, redact_url
from mozaiks_bus.connection.redis_errors import REDIS_ERRORS
from mozaiks_bus.errors import (
    BrokerUnavailable,
    BusClosed,
    ConfigError,
    InvalidEvent,
    PublishFailed,
    TransportError,
    Unprocessable,
)
from mozaiks_bus.event import Event
from mozaiks_bus.retry import Backoff, RetryPolicy
from mozaiks_bus.settings import BusSettings

__all__ = ["MassTransitBridge"]

logger = logging.getLogger("mozaiks_bus.amqp")
_RETRY = RetryPolicy(base_s=0.5, max_s=30.0)
_REPORT_ERRORS: tuple[type[BaseException], ...] = (*REDIS_ERRORS, TransportError)


def _address_base(url: str) -> str:
    """``rabbitmq://host/vhost/``: the base of the envelope addresses (an IPv6 host in
    brackets, ``rabbitmq://[::1]/``, or .NET's ``Uri`` refuses the address)."""
    parts = urlsplit(url)
    vhost = parts.path.lstrip("/")
    host = parts.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    return f"rabbitmq://{host}/{vhost + '/' if vhost else ''}"


def _header_text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


class MassTransitBridge:
    """See the module docstring. ``start()`` / ``stop()`` on one running loop."""

    def __init__(self, settings: BusSettings, *, report_interval_s: float = 2.0,
                 instance: str | None = None) -> None:
        if not settings.amqp_url:
            raise ConfigError("amqp_url", "is not set (MOZAIKS_AMQP_URL): the bridge has no "
                              "RabbitMQ to talk to")
        if not settings.broker_url:
            raise ConfigError("broker_url", "is not set (MOZAIKS_BROKER_URL): the bridge reads "
                              "and writes durable streams")
        self.settings = settings
        self.url = settings.amqp_url
        self.contracts = contracts_for(settings)
        self.outbound = {c.type: c for c in self.contracts if c.outbound}
        self.inbound = [c for c in self.contracts if c.inbound]
        self.queue = bridge_queue(settings)
        endpoints = {c.queue for c in self.contracts if c.queue}
        if self.queue in endpoints:
            raise ConfigError("amqp_queue", f"{self.queue!r} is a .NET receive endpoint's "
                              "queue; the bridge would compete with its consumer for "
                              "messages: name a queue of the bridge's own")
        self.origin = f"mozaiks-bus.{settings.prefix}"
        self.instance = instance or f"{socket.gethostname()}.{os.getpid()}"
        self.report_interval_s = report_interval_s
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.bus = Bus(config=settings)
        self._address = _address_base(self.url)
        self._host = host_info()
        self.link = RabbitLink(self.url, self.contracts, queue=self.queue,
                               declare_endpoints=settings.amqp_declare_endpoints,
                               prefetch=settings.amqp_concurrency, name=self.instance,
                               publish_timeout_s=settings.publish_timeout_s)
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start the outbound consumers (waits for Redis, like ``Bus.start``) and the
        RabbitMQ side in the background (it waits for RabbitMQ, logging why)."""
        settings = self.settings
        if self.outbound:
            start = await self.bus.transport.availability.retry(
                lambda: asyncio.to_thread(self._start_position), what="the bridge's start")
            for contract in self.outbound.values():
                self.bus.consumer(contract.type, group=settings.keys.bridge_group(),
                                  concurrency=settings.amqp_concurrency,
                                  max_deliveries=settings.amqp_max_deliveries,
                                  retry=_RETRY, start=start)(self._forward)
        await self.bus.start()
        self._tasks = [asyncio.create_task(self.link.connect(self._receive), name="amqp-link"),
                       asyncio.create_task(self._report_loop(), name="amqp-report")]

    def _start_position(self) -> str:
        client = create_sync_client(str(self.settings.broker_url),
                                    client_name="mozaiks-bus:bridge")
        try:
            return record_bridge_start(client, self.settings)
        finally:
            client.close()

    async def stop(self) -> None:
        """Stop taking messages, drain the outbound consumers, close RabbitMQ."""
        self._stopping = True
        await self.link.stop_consuming()
        stuck = await cancel_and_wait(self._tasks)
        if stuck:
            logger.error("bridge tasks did not stop: %s", [task.get_name() for task in stuck])
        with contextlib.suppress(*_REPORT_ERRORS):
            await self._forget()  # before the bus closes its clients
        await self.bus.stop()
        await self.link.close()

    # -- outbound ---------------------------------------------------------------------

    async def _forward(self, event: Event) -> None:
        if event.extensions.get(BRIDGED_EXTENSION) == "amqp":
            self.counters["bridged_not_returned"] += 1
            return
        contract: Contract = self.outbound[event.type]
        with tracing.span("producer", f"send {contract.exchange}", event.type, event.id,
                          event.traceparent):
            trace = tracing.traceparent_headers(event.traceparent).get("traceparent")
            try:
                outbound = to_envelope(event, contract, address=self._address,
                                       origin=self.origin, host=self._host, traceparent=trace)
            except InvalidEvent as exc:
                raise Unprocessable(f"{event.type} {event.id} cannot be a "
                                    f"{contract.message_type}: {exc.field}: {exc.rule}") from None
            message = aio_pika.Message(
                outbound.body, content_type=CONTENT_TYPE, message_id=outbound.message_id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT, headers=dict(outbound.headers),
            )
            await self.link.publish(lambda t: t.exchanges[contract.exchange], message,
                                    f"{event.type} {event.id}")
        self.counters["published"] += 1

    # -- inbound ----------------------------------------------------------------------

    async def _receive(self, message: AbstractIncomingMessage) -> None:
        headers = message.headers or {}
        if _header_text(headers.get(ORIGIN_HEADER)) == self.origin:
            self.counters["own_returned"] += 1
            await message.ack()
            return
        try:
            inbound = from_envelope(message.body, self.inbound,
                                    traceparent=_header_text(headers.get("traceparent")))
            event = Event.create(
                inbound.contract.type, inbound.data, source=inbound.source, id=inbound.event_id,
                time=inbound.time, correlationid=inbound.correlation_id,
                traceparent=inbound.traceparent, extensions={BRIDGED_EXTENSION: "amqp"},
            )
            await self._publish_inbound(event)
        except UnknownMessageType as exc:
            await self._move(message, "skipped", exc)
            return
        except (EnvelopeError, InvalidEvent) as exc:
            await self._move(message, "error", exc)
            return
        except BusClosed:  # stopping: the message goes back to the queue for later
            with contextlib.suppress(*AMQP_ERRORS):
                await message.nack(requeue=True)
            return
        except asyncio.CancelledError:
            with contextlib.suppress(*AMQP_ERRORS):
                await message.nack(requeue=True)
            raise
        except Exception as exc:  # a bug of ours must not leave the message unacked
            logger.exception("inbound message %s could not be taken in", message.message_id)
            await self._move(message, "error", EnvelopeError(
                "body", f"could not be taken in: {type(exc).__name__}: {exc}"))
            return
        await message.ack()
        self.counters["received"] += 1

    async def _publish_inbound(self, event: Event) -> None:
        backoff = Backoff(0.1, 5.0)
        while True:
            try:
                await self.bus.publish_events([event])
                return
            except TransportError as exc:
                if self._stopping:
                    raise BusClosed("the bridge is stopping") from exc
                logger.warning("inbound %s %s not stored yet (%s); retrying", event.type,
                               event.id, exc)
                await backoff.sleep()

    async def _move(self, message: AbstractIncomingMessage, where: str,
                    exc: EnvelopeError | InvalidEvent) -> None:
        """Move ``message`` to the error or skipped queue with MassTransit's headers."""
        reason = str(exc) if isinstance(exc, EnvelopeError) else f"{exc.field}: {exc.rule}"
        headers = dict(message.headers or {})
        headers.update({
            "MT-Reason": "fault" if where == "error" else "dead-letter",
            "MT-Fault-ExceptionType": f"MozaiksBus.{type(exc).__name__}",
            "MT-Fault-Message": reason[:1000],
            "MT-Fault-Timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "MT-Fault-InputAddress": f"{self._address}{self.queue}",
            "MT-Host-MachineName": self._host["machineName"],
            "MT-Host-ProcessName": self._host["processName"],
            "MT-Host-ProcessId": self._host["processId"],
        })
        copy = aio_pika.Message(
            message.body, content_type=message.content_type, message_id=message.message_id,
            correlation_id=message.correlation_id, headers=headers,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        try:
            await self.link.publish(lambda t: t.error if where == "error" else t.skipped, copy,
                                f"the move to {self.queue}_{where}")
        except PublishFailed as failed:
            logger.warning("%s; the message goes back to the queue", failed)
            with contextlib.suppress(*AMQP_ERRORS):
                await message.nack(requeue=True)
            return
        await message.ack()
        self.counters["rejected" if where == "error" else "skipped"] += 1
        logger.warning("inbound message %s moved to %s_%s: %s", message.message_id,
                       self.queue, where, reason)

    # -- reports ----------------------------------------------------------------------

    async def _report_loop(self) -> None:
        while not self._stopping:  # a flag as well: a cancel swallowed inside redis-py
            # must not keep reporting (or hang stop())
            try:
                await self._report()
            except _REPORT_ERRORS as exc:
                logger.debug("bridge report not written: %s", exc)
            await asyncio.sleep(self.report_interval_s)

    async def _report(self) -> None:
        keys = self.settings.keys
        client = self._redis()
        state: dict[Any, Any] = {
            "connected": "1" if self.link.connected else "0", "updated": str(time.time()),
            "rabbitmq": redact_url(self.url), "last_error": self.link.last_error or "",
            **{name: str(count) for name, count in self.counters.items()},
            "reconnects": str(self.link.reconnects),
        }
        pipe = client.pipeline(transaction=False)
        pipe.hset(keys.bridge_state(self.instance), mapping=state)
        pipe.expire(keys.bridge_state(self.instance), state_ttl_s(self.report_interval_s))
        pipe.zadd(keys.bridges(), {self.instance: time.time()})
        await pipe.execute()

    def _redis(self) -> AsyncClient:
        streams = self.bus.transport.streams
        if streams is None:  # the broker_url check in __init__ rules it out
            raise BrokerUnavailable("the bus has no Redis streams")
        return streams.command_client()

    async def _forget(self) -> None:
        keys = self.settings.keys
        client = self._redis()
        await client.delete(keys.bridge_state(self.instance))
        await client.zrem(keys.bridges(), self.instance)
