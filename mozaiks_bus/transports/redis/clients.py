"""The durable scope's Redis clients, as the Redis transport provides them.

Created lazily on the loop that first asks (redis-py clients belong to one loop), with
names that show in ``CLIENT LIST``; the blocking client's socket timeout outlasts
``consumer_block_ms`` so a blocked ``XREADGROUP`` is not mistaken for a dead link.
"""

from __future__ import annotations

from mozaiks_bus.connection import AsyncClient, create_async_any_client
from mozaiks_bus.settings import BusSettings

__all__ = ["RedisStreamClients"]


class RedisStreamClients:
    """:class:`~mozaiks_bus.connection.StreamClients` for one broker URL."""

    def __init__(self, url: str, settings: BusSettings) -> None:
        self.url = url
        self._settings = settings
        self._command: AsyncClient | None = None
        self._blocking: AsyncClient | None = None

    def command_client(self) -> AsyncClient:
        """The client for ordinary commands (created on first use)."""
        if self._command is None:
            self._command = create_async_any_client(
                self.url, client_name=f"mozaiks-bus:{self._settings.service}:streams")
        return self._command

    def blocking_client(self) -> AsyncClient:
        """The client for ``XREADGROUP ... BLOCK`` (created on first use)."""
        if self._blocking is None:
            block_s = self._settings.consumer_block_ms / 1000
            self._blocking = create_async_any_client(
                self.url, socket_timeout=block_s + 10,
                client_name=f"mozaiks-bus:{self._settings.service}:read")
        return self._blocking

    async def aclose(self) -> None:
        """Close both clients; the next use creates them again."""
        for client in (self._blocking, self._command):
            if client is not None:
                await client.aclose()
        self._command = self._blocking = None
