"""What a publish call turns into before any transport sees it.

:class:`Outbound` validates an event against the catalog, routes it (the table plus a
call's overrides; a local-only type stays local), checks a ui event's subject names a
valid chat, and encodes the wire JSON only when the event leaves the process. Every
rejection is :class:`~mozaiks_bus.errors.InvalidEvent` naming the field, raised before
anything is delivered or sent, with or without a broker.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from mozaiks_bus import tracing
from mozaiks_bus.catalog import Catalog
from mozaiks_bus.errors import ConfigError, InvalidEvent
from mozaiks_bus.event import Event
from mozaiks_bus.keys import Keys
from mozaiks_bus.routing import RoutingTable, Scope, scope_parts

__all__ = ["Outbound", "Prepared"]


class Prepared(NamedTuple):
    """An event ready to deliver: its scopes, and its wire JSON if it leaves (else None)."""

    event: Event
    scopes: Scope
    payload: str | None


class Outbound:
    """Validate, route and encode events for one bus."""

    def __init__(self, *, catalog: Catalog, routing: RoutingTable, keys: Keys, source: str,
                 remote: bool, min_replicas: int = 0) -> None:
        self.catalog = catalog
        self.routing = routing
        self._keys = keys
        self._source = source
        self._remote = remote
        self._min_replicas = min_replicas

    def create(self, type: str, data: Mapping[str, Any] | None, attrs: dict[str, Any]
               ) -> Prepared:
        """A new event from a publish call; ``attrs`` holds event attributes and the
        scope overrides ``fanout``/``durable``/``ui`` (popped here)."""
        fanout, durable, ui = attrs.pop("fanout", None), attrs.pop("durable", None), \
            attrs.pop("ui", None)
        if not attrs.get("traceparent") and tracing.active():
            attrs["traceparent"] = tracing.new_traceparent(type)
        event = Event.create(type, data, source=self._source, **attrs)
        return self.route(event, fanout=fanout, durable=durable, ui=ui)

    def replicas(self, asked: int | None) -> int:
        """How many replicas a confirmed publish waits for: ``asked``, else the
        configured ``durable_min_replicas``; ConfigError for a bad value."""
        if asked is None:
            return self._min_replicas
        if type(asked) is not int or not 0 <= asked <= 64:
            raise ConfigError("min_replicas", f"must be an integer from 0 to 64 (got {asked!r})")
        return asked

    def refuse_local_only(self, pattern: str, group: str) -> None:
        """Raise :class:`ConfigError` (field ``routes``) if a routing rule or the catalog
        keeps every type ``pattern`` matches in the publishing process: a durable
        consumer group of it would never get anything."""
        if "*" not in pattern and self.catalog.is_local_only(pattern):
            keeper = f"the catalog ({pattern} carries live objects)"
        elif (rule := self.routing.local_only_rule(pattern)) is not None:
            keeper = f"the routing rule {rule!r} (local only)"
        else:
            return
        raise ConfigError("routes", f"consumer group {group!r} on {pattern!r} would never "
                          f"get an event: {keeper} keeps them in the process that publishes "
                          "them; route them durable or drop the rule")

    def route(self, event: Event, *, fanout: bool | None = None, durable: bool | None = None,
              ui: bool | None = None) -> Prepared:
        """Validate ``event`` against the catalog, route it, encode it if it leaves."""
        self.catalog.validate(event.type, event.data)
        scopes = self.routing.resolve(event.type, subject=event.subject, fanout=fanout,
                                      durable=durable, ui=ui)
        if self.catalog.is_local_only(event.type):
            if fanout or durable or ui:
                raise InvalidEvent("type", f"{event.type} is local-only: it carries live objects")
            scopes = Scope.LOCAL
        parts = scope_parts(scopes)
        if parts.ui and event.subject is not None:
            # the subject names the chat's Redis keys; a bad one must fail here, not
            # inside the transport's sender (where it would stop every later send)
            try:
                self._keys.ui_channel(event.subject)
            except InvalidEvent as exc:
                raise InvalidEvent("subject", f"names the chat of a ui event: {exc.rule}",
                                   value=event.subject) from None
        return Prepared(event, scopes,
                        event.to_json() if parts.remote and self._remote else None)
