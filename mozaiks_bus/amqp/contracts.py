"""Which bus types the bridge carries, and as which MassTransit message.

A :class:`Contract` ties a bus type to a .NET message type: its URN
(``urn:message:Namespace:Class``), its exchange (``Namespace:Class``, fanout, durable:
what MassTransit declares), the receive endpoint to declare for it (if any), the
direction and the key style of its ``message``.

:func:`contracts_for` gives the contracts of an install: every catalog model that is a
.NET contract (:mod:`mozaiks_bus.catalog.dotnet`), then ``amqp_contracts`` (a
configured entry for a catalog type replaces it). Catalog contracts go **outbound**
(the .NET services consume them); the ``HostingProvisioning*`` events, which the .NET
hosting service publishes, go **both** ways. Both are the defaults the issue names;
``[[amqp_contracts]]`` changes them per type.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from mozaiks_bus.catalog import CATALOG, DotnetEvent
from mozaiks_bus.settings import AmqpContract, BusSettings

__all__ = [
    "BASE_EVENTS_EXCHANGE",
    "URN_PREFIX",
    "Contract",
    "bridge_queue",
    "contracts_for",
    "urn_of",
]

URN_PREFIX = "urn:message:"
BASE_EVENTS_EXCHANGE = "EventBus.Messages.Events:BaseEvents"
"""The exchange of ``BaseEvents``; MassTransit binds each contract's exchange to it."""
_INBOUND_BY_DEFAULT = frozenset({
    "hosting.provisioning_requested", "hosting.provisioning_completed",
    "hosting.provisioning_failed",
})

Direction = Literal["outbound", "inbound", "both"]


def urn_of(message_type: str) -> str:
    """MassTransit's URN of ``Namespace:Class``."""
    return URN_PREFIX + message_type


@dataclass(frozen=True, slots=True)
class Contract:
    """One bus type carried as a MassTransit message (see the module docstring)."""

    type: str
    message_type: str  # Namespace:Class
    direction: Direction
    queue: str | None = None  # the .NET receive endpoint, declared for outbound messages
    camel_case: bool = False  # convert data keys snake_case <-> camelCase
    model: builtins.type[BaseModel] | None = None  # the catalog model, when there is one
    base_exchanges: tuple[str, ...] = ()  # exchanges MassTransit binds this one to

    @property
    def urn(self) -> str:
        """``urn:message:Namespace:Class``."""
        return urn_of(self.message_type)

    @property
    def exchange(self) -> str:
        """The message-type exchange (fanout, durable), named as MassTransit names it."""
        return self.message_type

    @property
    def outbound(self) -> bool:
        """Whether bus events of this type are published to RabbitMQ."""
        return self.direction in ("outbound", "both")

    @property
    def inbound(self) -> bool:
        """Whether messages of this type on RabbitMQ become bus events."""
        return self.direction in ("inbound", "both")


def _from_catalog(event_type: str, model: type[DotnetEvent]) -> Contract:
    return Contract(
        type=event_type,
        message_type=model.dotnet_exchange,
        direction="both" if event_type in _INBOUND_BY_DEFAULT else "outbound",
        queue=model.dotnet_queue if event_type not in _INBOUND_BY_DEFAULT else None,
        model=model,
        base_exchanges=(BASE_EVENTS_EXCHANGE,),
    )


def _from_settings(entry: AmqpContract) -> Contract:
    model = CATALOG.get(entry.type)
    is_dotnet = model is not None and issubclass(model, DotnetEvent)
    return Contract(
        type=entry.type, message_type=entry.message_type, direction=entry.direction,
        queue=entry.queue, camel_case=entry.camel_case and not is_dotnet,
        model=model, base_exchanges=(BASE_EVENTS_EXCHANGE,) if is_dotnet else (),
    )


def contracts_for(settings: BusSettings) -> list[Contract]:
    """The install's contracts: the catalog's .NET ones, then the configured ones (a
    configured type replaces the catalog's entry). Sorted by type."""
    found: dict[str, Contract] = {}
    for event_type in CATALOG.types():
        model = CATALOG.get(event_type)
        if model is not None and issubclass(model, DotnetEvent) and model.dotnet_exchange:
            found[event_type] = _from_catalog(event_type, model)
    for entry in settings.amqp_contracts:
        found[entry.type] = _from_settings(entry)
    return [found[name] for name in sorted(found)]


def bridge_queue(settings: BusSettings) -> str:
    """The bridge's own inbound queue: ``amqp_queue``, default ``<prefix>.bridge``."""
    return settings.amqp_queue or f"{settings.prefix}.bridge"
