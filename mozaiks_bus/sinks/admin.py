"""The one door to the sinks' admin API: a sync client whose errors are translated.

``with admin_client(settings) as client: sink_states(client, settings)``: the client is
closed on the way out, and any redis-py or socket error raised inside comes out as
:class:`~mozaiks_bus.errors.BrokerUnavailable` / :class:`~mozaiks_bus.errors.TransportError`
(password scrubbed), so the CLI and the HTTP admin never show a raw Redis error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Literal

import redis

from mozaiks_bus.connection import create_sync_any_client, create_sync_client
from mozaiks_bus.connection.redis_errors import REDIS_ERRORS, translate_redis_error
from mozaiks_bus.errors import ConfigError
from mozaiks_bus.settings import BusSettings

__all__ = ["admin_client", "refuse_cluster"]


@contextlib.contextmanager
def admin_client(settings: BusSettings, action: str = "read sinks", *,
                 on: Literal["queue", "broker"] = "queue") -> Iterator[Any]:
    """A sync client, errors inside translated: ``on="queue"`` the Redis of RQ and the
    sinks' ledger (``queue_url``, else the broker), ``on="broker"`` the broker (streams,
    sink start positions, the bridge's state; a ``RedisCluster`` for a cluster)."""
    if not settings.broker_url:
        raise ConfigError("broker_url", "is not set (MOZAIKS_BROKER_URL): sinks live in Redis")
    url = str(settings.queue_redis_url if on == "queue" else settings.broker_url)
    client = create_sync_client(url) if on == "queue" else create_sync_any_client(url)
    try:
        yield client
    except REDIS_ERRORS as exc:
        raise translate_redis_error(exc, action=action, url=url) from exc
    finally:
        client.close()


def refuse_cluster(client: redis.Redis, settings: BusSettings) -> None:
    """Raise ConfigError if ``client`` (the queue's Redis) is a Redis Cluster node: RQ
    does not run on a cluster. The error names the setting to change."""
    cluster: Any = client.info("cluster")
    if int(cluster.get("cluster_enabled", 0)):
        field = "queue_url" if settings.queue_url else "broker_url"
        raise ConfigError(field, "is a Redis Cluster node: RQ (the sink worker's queue) "
                          "does not run on Redis Cluster; set queue_url "
                          "(MOZAIKS_BUS_QUEUE_URL) to a standalone or Sentinel Redis")
