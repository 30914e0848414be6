"""The rules for names: every name that ends up in Redis or in the configuration.

One :class:`NameRule` per kind of name, used by :mod:`mozaiks_bus.keys` (key parts),
:mod:`mozaiks_bus.connection` (``memory://`` names) and :mod:`mozaiks_bus.settings`
(validators), so a name the settings accept is one the keys accept. Each rule carries
the sentence an error shows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeGuard

__all__ = [
    "ENV_VAR",
    "GROUP",
    "MEMORY_SERVER",
    "PREFIX",
    "SERVICE",
    "SINK",
    "TOKEN_NAME",
    "NameRule",
]


@dataclass(frozen=True, slots=True)
class NameRule:
    """A regular expression a whole name must match, and how to say it."""

    pattern: str
    rule: str

    def matches(self, value: object) -> TypeGuard[str]:
        """Whether ``value`` is a string that follows the rule."""
        return isinstance(value, str) and re.fullmatch(self.pattern, value) is not None


PREFIX = NameRule(r"[A-Za-z0-9_-]{1,64}", "1-64 characters of A-Z a-z 0-9 _ -")
SERVICE = NameRule(r"[A-Za-z0-9_.-]{1,64}", "1-64 characters of A-Z a-z 0-9 _ . -")
GROUP = SERVICE
TOKEN_NAME = SERVICE
MEMORY_SERVER = NameRule(r"[A-Za-z0-9_.-]{0,64}", "only a name of A-Z a-z 0-9 _ . -")
SINK = NameRule(r"[a-z0-9_-]{1,59}", "1-59 characters of a-z 0-9 _ -")
ENV_VAR = NameRule(r"[A-Za-z_][A-Za-z0-9_]{0,127}",
                   "an environment variable name (A-Z a-z 0-9 _, not starting with a digit)")
