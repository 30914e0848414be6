"""One-slot transactions: moved to :mod:`mozaiks_bus.connection.transactions`.

Kept so imports keep working; it goes once every importer uses the new path."""

from __future__ import annotations

from mozaiks_bus.connection.transactions import (
    CLAIM_IF_EMPTY,
    Command,
    commit_unless,
    multi_exec,
)

__all__ = [
    "CLAIM_IF_EMPTY",
    "Command",
    "commit_unless",
    "multi_exec",
]
