"""The routes of the configuration: ``[[routes]]``, and the pattern rule they share.

Each rule is a field of :class:`~mozaiks_bus.settings.BusSettings` and becomes one rule
of :class:`~mozaiks_bus.routing.RoutingTable` (configured rules first).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mozaiks_bus.errors import InvalidEvent
from mozaiks_bus.patterns import PATTERN_RULE, validate_pattern

__all__ = ["RouteRule", "RouteScope", "check_pattern"]

RouteScope = Literal["local", "fanout", "durable", "ui"]  # Scope's members, as TOML spells them


def check_pattern(value: str) -> str:
    """``value`` if it is a valid event type pattern, else ValueError stating the rule."""
    try:
        return validate_pattern(value)
    except InvalidEvent:
        raise ValueError(f"pattern {PATTERN_RULE}") from None


class RouteRule(BaseModel):
    """One ``[[routes]]`` rule: events matching ``pattern`` take ``scopes``.

    Configured rules are tried in order, before the built-in defaults; local delivery
    always happens whatever ``scopes`` says. ``scopes`` needs at least one entry
    (``["local"]`` for local only); duplicates are dropped.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    pattern: str
    scopes: list[RouteScope] = Field(min_length=1)

    _check_pattern = field_validator("pattern")(check_pattern)

    @field_validator("scopes")
    @classmethod
    def _dedupe(cls, value: list[RouteScope]) -> list[RouteScope]:
        return list(dict.fromkeys(value))
