"""Event type patterns for subscriptions, routes and sinks.

A pattern is a type name in which any segment may contain ``*`` after its first
character (``chat.*``, ``subscription_*``, ``entitlement.limit_*``), or the lone ``*``
that matches every type. ``*`` matches any run of characters, dots included, so
``chat.*`` matches ``chat.run_complete`` and ``chat.orchestration.run_started``.
Patterns follow :data:`PATTERN_REGEX`: a type name (:data:`mozaiks_bus.event.TYPE_PATTERN`:
dot-separated non-empty segments of ASCII letters in either case, digits, ``_`` and
``-``, starting with a letter) in which ``*`` may also appear anywhere after the first
character (DESIGN.md's rule, widened so the first segment can hold a ``*`` too, as its
own ``subscription_*`` example needs), at most 128 characters.

Matching is case-sensitive, as CloudEvents types are: ``order.*`` does not match
``Order.Created``; write ``Order.*`` (or ``*``) for it. The same holds for routes,
sinks, tokens' ``publish_patterns`` and the Redis PSUBSCRIBE patterns built from them.
"""

from __future__ import annotations

import re
from functools import lru_cache

from mozaiks_bus.errors import InvalidEvent
from mozaiks_bus.event import MAX_TYPE_LENGTH

__all__ = ["PATTERN_REGEX", "PATTERN_RULE", "Pattern", "compile_pattern", "validate_pattern"]

PATTERN_REGEX = r"^[A-Za-z][A-Za-z0-9_*-]*(\.[A-Za-z0-9_*-]+)*$"
"""The pattern rule as a regular expression (the lone ``*`` is allowed besides)."""
PATTERN_RULE = (
    f"must match {PATTERN_REGEX} or be exactly '*' (a type name that may also hold '*' "
    f"after its first character; matching is case-sensitive) and be at most "
    f"{MAX_TYPE_LENGTH} characters"
)
_PATTERN_RE = re.compile(PATTERN_REGEX)  # used with fullmatch


def validate_pattern(pattern: object, *, field: str = "pattern") -> str:
    """Return ``pattern`` if it is a valid pattern, else raise InvalidEvent."""
    if not isinstance(pattern, str):
        raise InvalidEvent(field, "must be a string", value=pattern)
    if pattern == "*":
        return pattern
    if len(pattern) > MAX_TYPE_LENGTH or _PATTERN_RE.fullmatch(pattern) is None:
        raise InvalidEvent(field, PATTERN_RULE, value=pattern)
    return pattern


class Pattern:
    """A compiled, validated pattern; ``matches(type_name)`` is exact unless it has ``*``."""

    __slots__ = ("_regex", "text")

    def __init__(self, text: str) -> None:
        self.text = validate_pattern(text)
        if "*" in text:
            parts = (re.escape(part) for part in text.split("*"))
            self._regex: re.Pattern[str] | None = re.compile(".*".join(parts))
        else:
            self._regex = None

    @property
    def is_exact(self) -> bool:
        """True when the pattern names one type (no ``*``)."""
        return self._regex is None

    def matches(self, type_name: str) -> bool:
        """Whether ``type_name`` matches this pattern."""
        if self._regex is None:
            return type_name == self.text
        return self._regex.fullmatch(type_name) is not None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pattern) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"Pattern({self.text!r})"


@lru_cache(maxsize=1024)
def compile_pattern(text: str) -> Pattern:
    """A cached :class:`Pattern` for ``text``."""
    return Pattern(text)
