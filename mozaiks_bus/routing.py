"""The routing table: which scopes an event type takes.

Rules are ``(pattern, scopes)`` pairs tried in order; the first matching rule wins.
Configured rules come before the defaults below, so config can change any of them.
Local delivery always happens, whatever the rule says. Without a broker only local
delivery happens (the remote part of a route is then a no-op).

Default rules (first match wins):

====================================  =============================  ========================
pattern                               scopes                         why
====================================  =============================  ========================
chat.structured_output_ready          local                          carries a live object
chat.usage_summary, chat.run_complete local, durable, ui             billing and workflows
chat.*                                local, ui                      UI pushes for a chat
notification.created                  local, durable                 email and push delivery
plugin.execution.*                    local, durable                 cross-service record
ai.artifact.created                   local, durable                 cross-service record
entitlement.*                         local, durable                 billing relevant
messaging.*, hosting.*                local, durable                 the .NET contracts
settings_updated, subscription_*,
plugin_settings_updated,
theme_changed, module_status,
notification_preferences_updated,
profile_updated, all_notifications_read,
plugin_executed, plugin_execution_error local, fanout                state every worker needs
api_error, module_metric              local                          high-volume local signals
``*`` (anything else)                 local, fanout                  at most once, everywhere
====================================  =============================  ========================

The ``ui`` scope only applies to an event with a ``subject`` (the chat id). The fifth
scope of the README, ``http``, is not a route: an HTTP sink is a consumer group on the
durable scope (:mod:`mozaiks_bus.sinks`).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from mozaiks_bus.errors import ConfigError, InvalidEvent
from mozaiks_bus.patterns import Pattern

__all__ = ["DEFAULT_RULES", "RECONNECTED_EVENT", "Route", "RoutingTable", "Scope", "ScopeParts",
           "scope_parts"]

RECONNECTED_EVENT = "bus.fanout_reconnected"
"""The bus's own local-only event: the fan-out link was re-established (pub/sub lost
what was published meanwhile). Data: ``{"reconnects", "down_s"}``."""


class Scope(enum.Flag):
    """The delivery scopes an event can take."""

    LOCAL = enum.auto()
    FANOUT = enum.auto()
    DURABLE = enum.auto()
    UI = enum.auto()
    REMOTE = FANOUT | DURABLE | UI  # every scope that leaves the process

    @classmethod
    def parse(cls, names: Iterable[str]) -> Scope:
        """``["fanout", "durable"]`` -> ``Scope.LOCAL | Scope.FANOUT | Scope.DURABLE``."""
        result = cls.LOCAL
        for name in names:
            try:
                result |= cls[name.upper()]
            except KeyError:
                choices = ", ".join(member.name.lower() for member in cls if member.name)
                raise ConfigError("routes.scopes", f"unknown scope {name!r}; use {choices}")\
                    from None
        return result

    def names(self) -> list[str]:
        """Lower-case member names, in declaration order."""
        return [m.name.lower() for m in Scope if m in self and m.name is not None]


class ScopeParts(NamedTuple):
    """A :class:`Scope` value as plain booleans, for the hot path (``enum.Flag``
    arithmetic costs about a microsecond an operation)."""

    fanout: bool
    durable: bool
    ui: bool
    remote: bool


_PARTS: dict[Scope, ScopeParts] = {}
for _bits in range(16):
    _value = Scope(_bits)
    _PARTS[_value] = ScopeParts(bool(_value & Scope.FANOUT), bool(_value & Scope.DURABLE),
                                bool(_value & Scope.UI), bool(_value & Scope.REMOTE))


def scope_parts(scopes: Scope) -> ScopeParts:
    """``scopes`` as booleans (one dict lookup)."""
    return _PARTS[scopes]


@dataclass(frozen=True, slots=True)
class Route:
    """The outcome of routing one event: its scopes and the rule that chose them."""

    scopes: Scope
    rule: str

    @property
    def remote(self) -> bool:
        """Whether any scope beyond local applies."""
        return bool(self.scopes & Scope.REMOTE)


_L, _F, _D, _U = Scope.LOCAL, Scope.FANOUT, Scope.DURABLE, Scope.UI
_FANOUT_TYPES = (
    "settings_updated", "subscription_*", "plugin_settings_updated", "theme_changed",
    "module_status", "notification_preferences_updated", "profile_updated",
    "all_notifications_read", "plugin_executed", "plugin_execution_error",
)
DEFAULT_RULES: tuple[tuple[str, Scope], ...] = (
    ("chat.structured_output_ready", _L),
    ("chat.usage_summary", _L | _D | _U),
    ("chat.run_complete", _L | _D | _U),
    ("chat.*", _L | _U),
    ("notification.created", _L | _D),
    ("plugin.execution.*", _L | _D),
    ("ai.artifact.created", _L | _D),
    ("entitlement.*", _L | _D),
    ("messaging.*", _L | _D),
    ("hosting.*", _L | _D),
    *((name, _L | _F) for name in _FANOUT_TYPES),
    ("api_error", _L),
    ("module_metric", _L),
    ("*", _L | _F),
)


class RoutingTable:
    """Ordered ``(pattern, scopes)`` rules; configured rules first, then the defaults."""

    def __init__(
        self,
        rules: Sequence[tuple[str, Scope | Iterable[str]]] = (),
        *,
        include_defaults: bool = True,
    ) -> None:
        compiled: list[tuple[Pattern, Scope]] = []
        for index, (text, scopes) in enumerate(rules):
            try:
                pattern = Pattern(text)
            except InvalidEvent as exc:
                raise ConfigError(f"routes.{index}.pattern", exc.rule) from None
            scope = scopes if isinstance(scopes, Scope) else Scope.parse(scopes)
            compiled.append((pattern, scope | Scope.LOCAL))
        if include_defaults:
            compiled.extend((Pattern(text), scope) for text, scope in DEFAULT_RULES)
        self._rules = tuple(compiled)
        self._cache: dict[str, Route] = {}
        # (type, has subject, fanout, durable, ui overrides) -> scopes
        self._resolved: dict[tuple[str, bool, bool | None, bool | None, bool | None],
                             Scope] = {}

    @property
    def rules(self) -> tuple[tuple[str, Scope], ...]:
        """The rules in the order they are tried."""
        return tuple((pattern.text, scope) for pattern, scope in self._rules)

    def route(self, type_name: str) -> Route:
        """The route for ``type_name``: the first matching rule, else local only."""
        cached = self._cache.get(type_name)
        if cached is not None:
            return cached
        route = Route(Scope.LOCAL, "(none)")
        for pattern, scope in self._rules:
            if pattern.matches(type_name):
                route = Route(scope, pattern.text)
                break
        if len(self._cache) < 4096:
            self._cache[type_name] = route
        return route

    def local_only_rule(self, pattern: str) -> str | None:
        """The rule that keeps every type ``pattern`` matches in its process (so a
        durable consumer of it would never get anything), or None.

        An exact type: the rule that routes it, when that rule is ``local`` only. A
        pattern with ``*``: the first rule of the very same text, when it is ``local``
        only (a narrower rule before it may still route some types elsewhere)."""
        if "*" not in pattern:
            route = self.route(pattern)
            return None if route.remote else route.rule
        for rule, scopes in self._rules:
            if rule.text == pattern:
                return None if scopes & Scope.REMOTE else rule.text
        return None

    def resolve(
        self,
        type_name: str,
        *,
        subject: str | None = None,
        fanout: bool | None = None,
        durable: bool | None = None,
        ui: bool | None = None,
    ) -> Scope:
        """The scopes for one publish: the table's route, then per-call overrides.

        ``True`` adds a scope, ``False`` removes it, ``None`` keeps the table's choice.
        The ui scope is dropped when the event has no ``subject`` to name the chat.
        """
        key = (type_name, subject is not None, fanout, durable, ui)
        cached = self._resolved.get(key)
        if cached is None:
            cached = self._resolve(type_name, subject, fanout, durable, ui)
            if len(self._resolved) < 8192:
                self._resolved[key] = cached
        return cached

    def _resolve(
        self, type_name: str, subject: str | None, fanout: bool | None,
        durable: bool | None, ui: bool | None,
    ) -> Scope:
        scopes = self.route(type_name).scopes
        for flag, override in ((Scope.FANOUT, fanout), (Scope.DURABLE, durable), (Scope.UI, ui)):
            if override is True:
                scopes |= flag
            elif override is False:
                scopes &= ~flag
        if subject is None:
            scopes &= ~Scope.UI
        return scopes | Scope.LOCAL
