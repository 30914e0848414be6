"""Transports: what carries events between processes, chosen by URL scheme.

``create_transport(url, settings=..., stats=...)`` picks the implementation
(broadcaster's ``_create_backend``): no URL means :class:`LocalTransport`; ``redis://``,
``rediss://``, ``unix://``, ``redis+sentinel://`` and ``memory://`` (fakeredis) mean the
Redis transport, ``redis+cluster://`` and ``rediss+cluster://`` the cluster transport
built on it, each imported only then. A :class:`Transport` instance may be injected into
``Bus(transport=...)`` instead (tests, custom brokers). The seam is
:mod:`mozaiks_bus.transports.base`.
"""

from __future__ import annotations

from mozaiks_bus.connection import parse_broker_url
from mozaiks_bus.settings import BusSettings
from mozaiks_bus.stats import BusStats
from mozaiks_bus.transports.base import RemoteDeliver, Transport, UiTransport
from mozaiks_bus.transports.local import LocalTransport

__all__ = ["LocalTransport", "RemoteDeliver", "Transport", "UiTransport", "create_transport"]


def create_transport(url: str | None, *, settings: BusSettings, stats: BusStats) -> Transport:
    """The transport for ``url`` (None or empty: local only). Raises ConfigError for a
    URL no transport takes."""
    if not url:
        return LocalTransport(history_max_len=settings.ui_history_max_len)
    if parse_broker_url(url).cluster:
        from mozaiks_bus.transports.cluster import ClusterTransport  # noqa: PLC0415

        return ClusterTransport(url, settings=settings, stats=stats)
    from mozaiks_bus.transports.redis import RedisTransport  # noqa: PLC0415  # lazy by scheme

    return RedisTransport(url, settings=settings, stats=stats)
