"""Broker URLs: parsed, validated and redacted: moved to :mod:`mozaiks_bus.connection.broker_urls`.

Kept so imports keep working; it goes once every importer uses the new path."""

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

__all__ = [
    "CLUSTER_SCHEMES",
    "SCHEMES",
    "BrokerUrl",
    "cluster_node_urls",
    "is_cluster_url",
    "parse_broker_url",
    "redact_url",
    "secrets_in",
]
