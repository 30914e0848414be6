"""Everything that speaks to redis-py below the transports, in one package.

* :mod:`~mozaiks_bus.connection.broker_urls`: broker URLs parsed, validated, redacted;
* :mod:`~mozaiks_bus.connection.clients`: the client factories (one Redis, Sentinel,
  Cluster, ``memory://``) and the accepted URL forms;
* :mod:`~mozaiks_bus.connection.redis_errors`: the one boundary where redis-py errors
  become mozaiks-bus errors;
* :mod:`~mozaiks_bus.connection.availability`: waiting for Redis (one policy);
* :mod:`~mozaiks_bus.connection.exchange`: the one hand-written RESP exchange (commands
  written at once on one redis-py connection, every reply read under one deadline);
* :mod:`~mozaiks_bus.connection.redirects`: the one policy for ``MOVED``/``ASK``/
  ``TRYAGAIN``/``CLUSTERDOWN``;
* :mod:`~mozaiks_bus.connection.transactions`: one-slot transactions on one Redis or a
  cluster.

This module re-exports the URL and client names (``from mozaiks_bus.connection import
create_async_client``); the others are imported from their modules.
"""

from __future__ import annotations

from mozaiks_bus.connection.broker_urls import (
    CLUSTER_SCHEMES,
    SCHEMES,
    BrokerUrl,
    cluster_node_urls,
    is_cluster_url,
    parse_broker_url,
    redact_url,
    secrets_in,
)
from mozaiks_bus.connection.clients import (
    AsyncClient,
    ClientOptions,
    StreamClients,
    SyncClient,
    create_async_any_client,
    create_async_client,
    create_sync_any_client,
    create_sync_client,
    release_memory_server,
    text,
)

__all__ = [
    "CLUSTER_SCHEMES",
    "SCHEMES",
    "AsyncClient",
    "BrokerUrl",
    "ClientOptions",
    "StreamClients",
    "SyncClient",
    "cluster_node_urls",
    "create_async_any_client",
    "create_async_client",
    "create_sync_any_client",
    "create_sync_client",
    "is_cluster_url",
    "parse_broker_url",
    "redact_url",
    "release_memory_server",
    "secrets_in",
    "text",
]
