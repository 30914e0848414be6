"""The one door to the sinks' admin API: a sync client whose errors are translated.

``with admin_client(settings) as client: sink_states(client, settings)``: the client is
closed on the way out, and any redis-py or socket error raised inside comes out as
:class:`~mozaiks_bus.errors.BrokerUnavailable` / :class:`~mozaiks_bus.errors.TransportError`
(password scrubbed), so the CLI and the HTTP admin never show a raw Redis error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis

from mozaiks_bus.connection import create_sync_client
from mozaiks_bus.errors import ConfigError
from mozaiks_bus.redis_errors import REDIS_ERRORS, translate_redis_error
from mozaiks_bus.settings import BusSettings

__all__ = ["admin_client"]


@contextlib.contextmanager
def admin_client(settings: BusSettings, action: str = "read sinks") -> Iterator[redis.Redis]:
    """A sync client for ``settings.broker_url``; errors inside are translated."""
    if not settings.broker_url:
        raise ConfigError("broker_url", "is not set (MOZAIKS_BROKER_URL): sinks live in Redis")
    client = create_sync_client(settings.broker_url)
    try:
        yield client
    except REDIS_ERRORS as exc:
        raise translate_redis_error(exc, action=action, url=settings.broker_url) from exc
    finally:
        client.close()
