"""mozaiks-bus: one event bus for the mozaiks platform, on one Redis.

Import everything public from here; submodules are internals unless documented
(``mozaiks_bus.compat`` is the drop-in for the platform's ``event_bus``).
"""

from mozaiks_bus._version import __version__
from mozaiks_bus.bus import Bus
from mozaiks_bus.catalog import CATALOG, Catalog
from mozaiks_bus.durable.consumer import Delivery
from mozaiks_bus.errors import (
    BrokerUnavailable,
    BusClosed,
    ConfigError,
    InvalidEvent,
    MozaiksBusError,
    PublishFailed,
    TransportError,
    Unprocessable,
)
from mozaiks_bus.event import Event
from mozaiks_bus.retry import RetryPolicy
from mozaiks_bus.routing import Route, RoutingTable, Scope
from mozaiks_bus.settings import BusSettings, load_settings
from mozaiks_bus.ui import SlowConsumer

__all__ = [
    "CATALOG",
    "BrokerUnavailable",
    "Bus",
    "BusClosed",
    "BusSettings",
    "Catalog",
    "ConfigError",
    "Delivery",
    "Event",
    "InvalidEvent",
    "MozaiksBusError",
    "PublishFailed",
    "RetryPolicy",
    "Route",
    "RoutingTable",
    "Scope",
    "SlowConsumer",
    "TransportError",
    "Unprocessable",
    "__version__",
    "load_settings",
]
