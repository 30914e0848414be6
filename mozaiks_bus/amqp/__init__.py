"""The MassTransit bridge over RabbitMQ: the .NET services hear the bus, and it hears them.

``pip install 'mozaiks-bus[amqp]'`` (aio-pika). The pieces:

* :mod:`.contracts` - which bus types travel, as which .NET message (URN, exchange);
* :mod:`.envelope` - MassTransit's JSON envelope, written and read by its rules;
* :mod:`.topology` - the exchanges and queues, declared as MassTransit declares them;
* :mod:`.bridge` - :class:`~.bridge.MassTransitBridge`, run by ``mozaiks-bus worker``;
* :mod:`.status` - what a running bridge reports (``status``, ``GET /v1/sinks``).

This package imports without aio-pika; :func:`require_amqp` and :func:`load_bridge`
raise a ConfigError with
the install hint when it is missing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mozaiks_bus.amqp.contracts import Contract, bridge_queue, contracts_for
from mozaiks_bus.amqp.envelope import (
    CONTENT_TYPE,
    EnvelopeError,
    UnknownMessageType,
    from_envelope,
    to_envelope,
)
from mozaiks_bus.amqp.status import bridge_report
from mozaiks_bus.errors import ConfigError
from mozaiks_bus.settings import BusSettings

if TYPE_CHECKING:
    from mozaiks_bus.amqp.bridge import MassTransitBridge

__all__ = [
    "CONTENT_TYPE",
    "Contract",
    "EnvelopeError",
    "UnknownMessageType",
    "bridge_queue",
    "bridge_report",
    "contracts_for",
    "from_envelope",
    "load_bridge",
    "require_amqp",
    "to_envelope",
]

INSTALL_HINT = "pip install 'mozaiks-bus[amqp]'"


def require_amqp() -> None:
    """Raise a ConfigError with the install hint unless aio-pika is installed."""
    try:
        import aio_pika  # noqa: F401, PLC0415  # only to tell whether the extra is there
    except ImportError:
        raise ConfigError("amqp_url", f"is set, but the MassTransit bridge needs aio-pika: "
                          f"{INSTALL_HINT}") from None


def load_bridge(settings: BusSettings) -> MassTransitBridge:
    """A :class:`~.bridge.MassTransitBridge` for ``settings`` (``amqp_url`` set), or a
    ConfigError naming the missing extra."""
    require_amqp()
    from mozaiks_bus.amqp.bridge import MassTransitBridge  # noqa: PLC0415

    return MassTransitBridge(settings)
