"""Settings of the MassTransit bridge over RabbitMQ (``amqp_*``; :mod:`mozaiks_bus.amqp`).

Fields of :class:`~mozaiks_bus.settings.BusSettings`, read like every other setting;
``amqp_url`` also comes from ``MOZAIKS_AMQP_URL`` (the name the issue and the platform
use), ``MOZAIKS_BUS_AMQP_URL`` being the other accepted spelling.

* ``amqp_url``: ``amqp://`` or ``amqps://`` (user, password and vhost in the URL, as
  RabbitMQ takes them); unset, the bridge is off. Masked like the broker URL.
* ``amqp_queue``: the bridge's own durable queue for inbound events (default
  ``<prefix>.bridge``); never an existing MassTransit endpoint's queue, which it would
  compete with (a known endpoint's queue is refused when the bridge starts). Its error
  queue is ``<amqp_queue>_error``, as MassTransit names them.
* ``amqp_contracts``: ``[[amqp_contracts]]`` for types beyond the catalog's .NET
  contracts, each with ``type`` (the bus type), ``message_type``
  (``Namespace:ClassName``, giving the URN ``urn:message:Namespace:ClassName`` and the
  exchange of that name), ``direction`` (``outbound``, ``inbound`` or ``both``), an
  optional ``queue`` (the .NET receive endpoint to declare for outbound messages) and
  ``camel_case`` (data keys ``snake_case`` on the bus, ``camelCase`` in the message).
  ``type`` follows the bus type rule (:data:`mozaiks_bus.event.TYPE_RULE`; the bridge
  derives no bus type from a .NET name, so ``com.example.order-created`` or
  ``Order.Created`` work as any other). A bus type (case-sensitively, as bus types are
  compared) or a message type (case-insensitively, as MassTransit matches URNs) may
  appear once.
* ``amqp_declare_endpoints``: declare the receive endpoints (exchange + queue, as
  MassTransit declares them) of outbound contracts that name one, so messages wait for
  a .NET service that has not started yet (default true).
* ``amqp_max_deliveries``: attempts of one outbound event while RabbitMQ is up but
  refuses it (then a dead letter, replayable with ``dlq``); a RabbitMQ outage does not
  use attempts: deliveries wait for the connection.
* ``amqp_concurrency``: outbound publishes in flight (each awaits its confirm) and the
  inbound prefetch.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from mozaiks_bus.errors import InvalidEvent
from mozaiks_bus.event import validate_type

__all__ = [
    "DEFAULT_AMQP_CONCURRENCY",
    "DEFAULT_AMQP_MAX_DELIVERIES",
    "AmqpContract",
    "check_amqp_url",
    "check_contracts",
    "check_queue_name",
]

DEFAULT_AMQP_MAX_DELIVERIES = 10
DEFAULT_AMQP_CONCURRENCY = 32
_MESSAGE_TYPE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
                              r":[A-Za-z_][A-Za-z0-9_+]*")
_QUEUE_RE = re.compile(r"[A-Za-z0-9_.:-]{1,200}")
MESSAGE_TYPE_RULE = ("must be Namespace:ClassName (a .NET namespace, ':', the class name), "
                     "as MassTransit names exchanges")
QUEUE_RULE = "must be 1-200 characters of A-Z a-z 0-9 _ . : -"


def check_amqp_url(value: str | None) -> str | None:
    """``value`` if it is an ``amqp://`` / ``amqps://`` URL, else ValueError."""
    if value is not None and not value.startswith(("amqp://", "amqps://")):
        raise ValueError("must be an amqp:// or amqps:// URL")
    return value


def check_queue_name(value: str | None) -> str | None:
    """``value`` if it is a usable RabbitMQ queue name, else ValueError."""
    if value is not None and not _QUEUE_RE.fullmatch(value):
        raise ValueError(QUEUE_RULE)
    return value


class AmqpContract(BaseModel):
    """One ``[[amqp_contracts]]`` entry: a bus type carried as a MassTransit message."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    message_type: str = Field(description="Namespace:ClassName of the .NET contract.")
    direction: Literal["outbound", "inbound", "both"] = "both"
    queue: str | None = None
    camel_case: bool = True

    @field_validator("type")
    @classmethod
    def _check_type(cls, value: str) -> str:
        try:
            validate_type(value)
        except InvalidEvent as exc:
            raise ValueError(exc.rule) from None  # the rule only: messages carry no value
        return value

    @field_validator("message_type")
    @classmethod
    def _check_message_type(cls, value: str) -> str:
        if not _MESSAGE_TYPE_RE.fullmatch(value):
            raise ValueError(MESSAGE_TYPE_RULE)
        return value

    _check_queue = field_validator("queue")(check_queue_name)


def check_contracts(items: list[AmqpContract]) -> list[AmqpContract]:
    """``items`` if no type and no message type repeats (a repeated message type would
    make an inbound message match two bus types); the error names the later entry."""
    types: dict[str, int] = {}
    messages: dict[str, int] = {}
    for index, item in enumerate(items):
        if item.type in types:
            raise PydanticCustomError(
                "duplicate_type", "type '{type}' is already configured by entry {first}; "
                "one contract per type",
                {"type": item.type, "first": types[item.type], "index": index})
        folded = item.message_type.lower()  # MassTransit matches URNs case-insensitively
        if folded in messages:
            raise PydanticCustomError(
                "duplicate_message_type", "message_type '{message_type}' is already used by "
                "entry {first}; an inbound message would match both",
                {"message_type": item.message_type, "first": messages[folded], "index": index})
        types[item.type] = messages[folded] = index
    return items
