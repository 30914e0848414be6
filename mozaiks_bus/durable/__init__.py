"""The durable scope: Redis Streams with consumer groups, at least once.

:class:`DurableRuntime` is what a :class:`~mozaiks_bus.Bus` runs when its transport
offers durable streams (``transport.streams``): it starts and stops the group consumers
(:mod:`.consumer`; acks in :mod:`.settle`, housekeeping in :mod:`.janitor`), keeps
retention (:mod:`.retention`) and inspects streams and dead letters (:mod:`.streams`).
Everything here runs on the bus loop, over the Redis clients the transport provides.
"""

from __future__ import annotations

import asyncio
import logging

from mozaiks_bus.connection import StreamClients
from mozaiks_bus.connection.availability import Availability
from mozaiks_bus.connection.redis_errors import REDIS_ERRORS
from mozaiks_bus.durable.consumer import ConsumerSpec, GroupConsumer
from mozaiks_bus.durable.retention import RetentionKeeper
from mozaiks_bus.durable.streams import StreamInspector
from mozaiks_bus.settings import BusSettings
from mozaiks_bus.stats import BusStats

__all__ = ["DurableRuntime"]

logger = logging.getLogger("mozaiks_bus.durable")


class DurableRuntime:
    """Starts and stops the group consumers of one bus and keeps retention."""

    def __init__(self, clients: StreamClients, settings: BusSettings, stats: BusStats, *,
                 availability: Availability) -> None:
        self.clients = clients
        self.availability = availability
        self._starting = asyncio.Lock()
        self.settings = settings
        self.stats = stats
        self.specs: list[ConsumerSpec] = []
        self._consumers: list[GroupConsumer] = []
        self._retention_task: asyncio.Task[None] | None = None
        self._inspector: StreamInspector | None = None

    @property
    def inspector(self) -> StreamInspector:
        """Read-side stream operations (lag, pending, dead letters, replay)."""
        if self._inspector is None:
            self._inspector = StreamInspector(self.clients.command_client(),
                                              self.settings.keys)
        return self._inspector

    def add(self, spec: ConsumerSpec) -> None:
        """Register a consumer (started by :meth:`start`, or now if already running)."""
        self.specs.append(spec)

    async def start(self) -> None:
        """Start the consumers registered since the last call, and the retention loop.

        Returns once every consumer has its groups; while Redis does not answer it waits
        (with backoff, reported to :attr:`availability`) instead of failing. Concurrent
        calls start each consumer once."""
        async with self._starting:
            if not self.specs:
                return
            for spec in self.specs[len(self._consumers):]:
                consumer = GroupConsumer(
                    spec, settings=self.settings, stats=self.stats,
                    client=self.clients.command_client(),
                    blocking_client=self.clients.blocking_client(),
                    availability=self.availability,
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
        await self.clients.aclose()
        self._inspector = None

    async def _retention_loop(self) -> None:
        keeper = RetentionKeeper(self.clients.command_client(), self.settings, self.stats)
        while True:
            await asyncio.sleep(self.settings.retention_interval_s)
            try:
                await keeper.check_all()
            except REDIS_ERRORS as exc:
                logger.warning("retention check failed: %s", exc)
