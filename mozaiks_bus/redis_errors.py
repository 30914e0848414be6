"""The translation of redis-py errors: moved to :mod:`mozaiks_bus.connection.redis_errors`.

Kept so imports keep working; it goes once every importer uses the new path."""

from __future__ import annotations

from mozaiks_bus.connection.redis_errors import (
    REDIS_ERRORS,
    is_busygroup,
    is_group_vanished,
    ping,
    redis_errors,
    translate_redis_error,
)

__all__ = [
    "REDIS_ERRORS",
    "is_busygroup",
    "is_group_vanished",
    "ping",
    "redis_errors",
    "translate_redis_error",
]
