"""The platform's optional broker seam: ``BrokerAdapter``, ``NoOpBroker``, a Redis one.

``get_broker_adapter()`` is keyed on ``MOZAIKS_BROKER_URL``: unset means
:class:`NoOpBroker`; a URL the connection layer accepts means
:class:`RedisBrokerAdapter` (a :class:`~mozaiks_bus.Bus` on it); anything else is a
:class:`~mozaiks_bus.errors.ConfigError` naming the variable.
"""

from __future__ import annotations

import os
from typing import Any, Protocol, runtime_checkable

from mozaiks_bus.bus import Bus
from mozaiks_bus.connection import parse_broker_url
from mozaiks_bus.settings import BROKER_URL_ENV

__all__ = ["BrokerAdapter", "NoOpBroker", "RedisBrokerAdapter", "get_broker_adapter"]


@runtime_checkable
class BrokerAdapter(Protocol):
    """The platform's optional broker seam: ``publish(topic, payload)`` and ``close()``."""

    async def publish(self, topic: str, payload: dict[str, Any]) -> None:
        """Send ``payload`` under ``topic``."""

    async def close(self) -> None:
        """Release resources."""


class NoOpBroker:
    """No broker configured: events stay in-process."""

    async def publish(self, topic: str, payload: dict[str, Any]) -> None:
        """Do nothing."""

    async def close(self) -> None:
        """Do nothing."""


class RedisBrokerAdapter:
    """``BrokerAdapter`` over a mozaiks-bus ``Bus``: ``publish`` is the confirmed path."""

    def __init__(self, url: str, *, bus: Bus | None = None) -> None:
        self.bus = bus or Bus(url)

    async def publish(self, topic: str, payload: dict[str, Any]) -> None:
        """Publish ``payload`` as event type ``topic``; raises if Redis did not take it."""
        await self.bus.publish(topic, payload)

    async def close(self) -> None:
        """Drain and disconnect the bus."""
        await self.bus.stop()


def get_broker_adapter(url: str | None = None) -> BrokerAdapter:
    """``NoOpBroker`` when ``MOZAIKS_BROKER_URL`` is unset, else the Redis adapter."""
    from_env = url is None
    url = os.environ.get(BROKER_URL_ENV) if url is None else url
    if not url:
        return NoOpBroker()
    parse_broker_url(url, source=f"env {BROKER_URL_ENV}" if from_env else None)
    return RedisBrokerAdapter(url)
