"""What every handler of one app shares: the bus, settings, tokens, metrics, dedupe."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import HTTPConnection

from mozaiks_bus.bus import Bus
from mozaiks_bus.connection import AsyncClient
from mozaiks_bus.errors import ConfigError
from mozaiks_bus.server.auth import Authenticator
from mozaiks_bus.server.dedupe import DedupeClaims
from mozaiks_bus.server.metrics import ServerMetrics
from mozaiks_bus.settings import BusSettings

__all__ = ["ServerState", "get_state", "redis_client"]


@dataclass
class ServerState:
    """Set on ``app.state.mozaiks`` by the lifespan, once the bus runs on the app's loop."""

    bus: Bus
    settings: BusSettings
    auth: Authenticator
    metrics: ServerMetrics
    dedupe: DedupeClaims
    owns_bus: bool = field(default=True)
    sinks_ready: bool = field(default=True)  # the configured sinks' start positions are set

    @property
    def redis(self) -> AsyncClient:
        """The Redis command client of the bus's durable scope (dedupe, readiness)."""
        return redis_client(self.bus)


def redis_client(bus: Bus) -> AsyncClient:
    """The command client the transport offers for durable streams; the API needs one."""
    streams = bus.transport.streams
    if streams is None:
        raise ConfigError("broker_url", "the HTTP API needs a broker with durable streams")
    return streams.command_client()


def get_state(conn: HTTPConnection) -> ServerState:
    """The state of the app serving ``conn`` (a FastAPI dependency)."""
    state: ServerState = conn.app.state.mozaiks
    return state
