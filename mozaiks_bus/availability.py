"""Waiting for Redis: moved to :mod:`mozaiks_bus.connection.availability`.

Kept so imports keep working; it goes once every importer uses the new path."""

from __future__ import annotations

from mozaiks_bus.connection.availability import (
    REPEAT_LOG_S,
    RETRYABLE,
    Availability,
)

__all__ = [
    "REPEAT_LOG_S",
    "RETRYABLE",
    "Availability",
]
