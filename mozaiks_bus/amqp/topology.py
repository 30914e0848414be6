"""The RabbitMQ entities the bridge declares, with the flags MassTransit uses.

Every exchange is **fanout, durable, not auto-delete, no arguments**, and every queue
**durable, not exclusive, not auto-delete, no arguments**: exactly MassTransit 8's
defaults, so a redeclare by either side is harmless (different flags would fail with
406 PRECONDITION_FAILED on whichever side declares second).

* Per contract: its message-type exchange (``Namespace:Class``), bound to the exchanges
  of its base classes (``EventBus.Messages.Events:BaseEvents``), as ``Publish<T>`` does.
* Per outbound contract naming a receive endpoint (``direct-message-sent-queue``), when
  ``amqp_declare_endpoints``: the endpoint's exchange and queue of that name, the
  message-type exchange bound to the endpoint exchange, as ``ReceiveEndpoint`` does.
  MassTransit itself publishes with ``mandatory=false``, so a message published before
  the consumer first started is dropped by RabbitMQ (nothing is bound yet); declaring
  the endpoint first keeps it in the queue for the consumer.
* The bridge's own queue, bound to every inbound contract's exchange, and its
  ``<queue>_error`` and ``<queue>_skipped`` exchange + queue pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

from mozaiks_bus.amqp.contracts import Contract

__all__ = ["Topology", "declare_topology"]


@dataclass(slots=True)
class Topology:
    """What :func:`declare_topology` declared (robust objects: restored on reconnect)."""

    exchanges: dict[str, AbstractExchange]
    queue: AbstractQueue
    error: AbstractExchange
    skipped: AbstractExchange


async def _exchange(channel: AbstractChannel, name: str) -> AbstractExchange:
    return await channel.declare_exchange(name, aio_pika.ExchangeType.FANOUT, durable=True,
                                          auto_delete=False)


async def _queue(channel: AbstractChannel, name: str) -> AbstractQueue:
    return await channel.declare_queue(name, durable=True, exclusive=False, auto_delete=False)


async def _exchange_and_queue(channel: AbstractChannel, name: str) -> AbstractExchange:
    exchange = await _exchange(channel, name)
    queue = await _queue(channel, name)
    await queue.bind(exchange, routing_key="")
    return exchange


async def declare_topology(channel: AbstractChannel, contracts: Sequence[Contract], *,
                           queue: str, declare_endpoints: bool) -> Topology:
    """Declare everything the module docstring lists; idempotent."""
    exchanges: dict[str, AbstractExchange] = {}
    for contract in contracts:
        exchange = exchanges[contract.exchange] = await _exchange(channel, contract.exchange)
        for base in contract.base_exchanges:
            if base not in exchanges:
                exchanges[base] = await _exchange(channel, base)
            await exchanges[base].bind(exchange, routing_key="")
        if contract.outbound and contract.queue and declare_endpoints:
            endpoint = await _exchange_and_queue(channel, contract.queue)
            await endpoint.bind(exchange, routing_key="")
    own = await _queue(channel, queue)
    for contract in contracts:
        if contract.inbound:
            await own.bind(exchanges[contract.exchange], routing_key="")
    error = await _exchange_and_queue(channel, f"{queue}_error")
    skipped = await _exchange_and_queue(channel, f"{queue}_skipped")
    return Topology(exchanges, own, error, skipped)
