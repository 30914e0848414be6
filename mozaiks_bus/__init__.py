"""mozaiks-bus: one event bus for the mozaiks platform, on one Redis.

Import everything public from here; submodules are internals unless documented
(``mozaiks_bus.compat`` is the drop-in for the platform's ``event_bus``).
"""

from ._version import __version__
from .bus import Bus
from .catalog import CATALOG, Catalog
from .errors import (
    BrokerUnavailable,
    BusClosed,
    ConfigError,
    InvalidEvent,
    MozaiksBusError,
    PublishFailed,
    TransportError,
)
from .event import Event
from .routing import Route, RoutingTable, Scope
from .settings import BusSettings, load_settings

__all__ = [
    "CATALOG",
    "BrokerUnavailable",
    "Bus",
    "BusClosed",
    "BusSettings",
    "Catalog",
    "ConfigError",
    "Event",
    "InvalidEvent",
    "MozaiksBusError",
    "PublishFailed",
    "Route",
    "RoutingTable",
    "Scope",
    "TransportError",
    "__version__",
    "load_settings",
]
