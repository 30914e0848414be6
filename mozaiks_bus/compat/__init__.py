"""Drop-in replacements for the mozaiks runtime's event code, one module per seam.

* :mod:`.runtime_bus`: ``EventBus`` / ``event_bus``, the platform's
  ``mozaiks_infra.event_bus`` with every public method and semantic kept;
* :mod:`.broker`: ``BrokerAdapter`` / ``NoOpBroker`` / ``get_broker_adapter()``, the
  platform's audit seam;
* :mod:`.dispatcher`: ``attach_dispatcher()``, forwarding the AI runtime dispatcher's
  events to a bus without blocking a run;
* :mod:`.transport`: ``attach_transport()``, the runtime's ``SimpleTransport`` sending UI
  frames through ``bus.ui`` and taking inputs from any worker.
"""

from mozaiks_bus.compat.broker import (
    BrokerAdapter,
    NoOpBroker,
    RedisBrokerAdapter,
    get_broker_adapter,
)
from mozaiks_bus.compat.dispatcher import attach_dispatcher
from mozaiks_bus.compat.runtime_bus import EventBus, event_bus
from mozaiks_bus.compat.transport import attach_transport, detach_transport

__all__ = [
    "BrokerAdapter",
    "EventBus",
    "NoOpBroker",
    "RedisBrokerAdapter",
    "attach_dispatcher",
    "attach_transport",
    "detach_transport",
    "event_bus",
    "get_broker_adapter",
]
