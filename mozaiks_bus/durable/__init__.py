"""The durable side of a Bus: its consumers, retention checks and stream inspection.

Created by the Bus when a broker is configured; everything here runs on the bus loop.
"""

from __future__ import annotations

import asyncio
import logging

from redis import exceptions as rexc
from redis.asyncio import Redis

from mozaiks_bus.connection import create_async_client
from mozaiks_bus.durable.consumer import ConsumerSpec, GroupConsumer
from mozaiks_bus.durable.retention import RetentionKeeper
from mozaiks_bus.durable.streams import StreamInspector
from mozaiks_bus.keys import Keys
from mozaiks_bus.settings import BusSettings
from mozaiks_bus.stats import BusStats

__all__ = ["DurableRuntime"]

logger = logging.getLogger("mozaiks_bus.durable")


class DurableRuntime:
    """Starts and stops the group consumers of one bus and keeps retention."""

    def __init__(self, url: str, settings: BusSettings, stats: BusStats) -> None:
        self.url = url
        self.settings = settings
        self.stats = stats
        self.specs: list[ConsumerSpec] = []
        self._consumers: list[GroupConsumer] = []
        self._client: Redis | None = None
        self._blocking: Redis | None = None
        self._retention_task: asyncio.Task[None] | None = None
        self._inspector: StreamInspector | None = None

    @property
    def client(self) -> Redis:
        """The command client (created on first use, on the running loop)."""
        if self._client is None:
            self._client = create_async_client(
                self.url, client_name=f"mozaiks-bus:{self.settings.service}:streams"
            )
        return self._client

    @property
    def inspector(self) -> StreamInspector:
        """Read-side stream operations (lag, pending, dead letters, replay)."""
        if self._inspector is None:
            self._inspector = StreamInspector(self.client, Keys(self.settings.prefix))
        return self._inspector

    def add(self, spec: ConsumerSpec) -> None:
        """Register a consumer (started by :meth:`start`, or now if already running)."""
        self.specs.append(spec)

    async def start(self) -> None:
        """Start the consumers registered since the last call, and the retention loop."""
        if not self.specs:
            return
        if self._blocking is None:
            block_s = self.settings.consumer_block_ms / 1000
            self._blocking = create_async_client(
                self.url, socket_timeout=block_s + 10,
                client_name=f"mozaiks-bus:{self.settings.service}:read",
            )
        for spec in self.specs[len(self._consumers):]:
            consumer = GroupConsumer(
                spec, url=self.url, settings=self.settings, stats=self.stats,
                client=self.client, blocking_client=self._blocking,
            )
            self._consumers.append(consumer)
            await consumer.start()
        if self._retention_task is None:
            self._retention_task = asyncio.create_task(self._retention_loop())

    async def stop(self, timeout: float) -> None:
        """Stop the consumers (draining in-flight work, bounded), then disconnect."""
        if self._retention_task is not None:
            self._retention_task.cancel()
            await asyncio.gather(self._retention_task, return_exceptions=True)
        await asyncio.gather(*(c.stop(timeout) for c in self._consumers))
        for client in (self._blocking, self._client):
            if client is not None:
                await client.aclose()
        self._client = self._blocking = None

    async def _retention_loop(self) -> None:
        keeper = RetentionKeeper(self.client, self.settings, self.stats)
        while True:
            await asyncio.sleep(self.settings.retention_interval_s)
            try:
                await keeper.check_all()
            except (rexc.RedisError, OSError) as exc:
                logger.warning("retention check failed: %s", exc)
