"""Request bodies of the HTTP sinks: the generic formats and the platform's named mappings.

Contract
--------
:func:`render` turns one event into the bytes a sink sends. A body is a pure function of
the event and the sink's ``format_options``: every attempt of one delivery sends the
same bytes (only the signature headers change), which is what an ``Idempotency-Key``
server expects. Formats:

=======================  ==================================================================
format                   body
=======================  ==================================================================
``cloudevents``          the structured-mode CloudEvent (``application/cloudevents+json``)
``data``                 the event's ``data`` object (``application/json``); the usage
                         ingest's ``chat.usage_summary`` body
``email-notification``   ``{recipient, subject, message, notification_type}`` from
                         ``notification.created`` (``NotificationsManager.send_email``);
                         skipped when ``recipient`` is empty or ``channels`` lacks
                         ``"email"``
``billing-usage``        ``{events: [{event_type: "token_usage", app_id, user_id,
                         timestamp, data: {workflow_id, model, input_tokens,
                         output_tokens, total_tokens, invocation_id, ...}}]}`` from
                         ``chat.usage_delta`` (or ``chat.usage_summary``), as the
                         platform's usage reporter posts it (one event per request)
``insights-events``      ``{appId, env, sentAtUtc, events: [{eventId, t, type, severity,
                         message, data}]}`` for ``/api/insights/ingest/events``, plus the
                         ``X-Correlation-Id`` header; options ``app_id`` (else
                         ``data.app_id``), ``env`` (default ``production``),
                         ``severity`` (default ``info``)
=======================  ==================================================================

A mapping raises :class:`SkipDelivery` for an event it deliberately does not send
(counted as skipped, no request), and :class:`FormatError` for an event it cannot map
(dead-lettered at once: retrying cannot fix it).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from mozaiks_bus.errors import InvalidEvent, MozaiksBusError
from mozaiks_bus.event import Event, format_time, parse_time

__all__ = [
    "FORMATS",
    "Body",
    "FormatError",
    "Formatter",
    "SkipDelivery",
    "render",
]

JSON = "application/json"


class FormatError(MozaiksBusError, ValueError):
    """The event cannot be turned into this sink's body (a permanent failure)."""


class SkipDelivery(MozaiksBusError):
    """The mapping does not send this event (not an error: counted as skipped)."""


@dataclass(frozen=True, slots=True)
class Body:
    """What one delivery sends: the bytes, their content type, extra headers."""

    content: bytes
    content_type: str = JSON
    headers: Mapping[str, str] = field(default_factory=dict)


Formatter = Callable[[Event, Mapping[str, str]], Body]


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _cloudevents(event: Event, options: Mapping[str, str]) -> Body:
    return Body(event.to_json().encode(), "application/cloudevents+json")


def _data(event: Event, options: Mapping[str, str]) -> Body:
    return Body(_json(event.data))


def _required(event: Event, name: str) -> Any:
    value = event.data.get(name)
    if value is None or value == "":
        raise FormatError(f"data.{name} is required by this sink's format ({event.type})")
    return value


def _email(event: Event, options: Mapping[str, str]) -> Body:
    channels = event.data.get("channels")
    if isinstance(channels, list) and "email" not in channels:
        raise SkipDelivery("channels do not include email")
    if not event.data.get("recipient"):
        raise SkipDelivery("no recipient")
    body = {
        "recipient": event.data["recipient"],
        "subject": _required(event, "subject"),
        "message": _required(event, "message"),
        "notification_type": event.data.get("notification_type") or "general",
    }
    return Body(_json(body))


def _zulu(value: Any, event: Event) -> str:
    try:
        moment = parse_time(value) if value is not None else event.time
    except InvalidEvent:
        raise FormatError(f"data.event_ts is not an ISO 8601 time ({event.type})") from None
    return format_time(moment.astimezone(UTC))


_USAGE_EXTRAS = ("chat_id", "agent_name", "cached", "duration_sec", "event_id")


def _billing_usage(event: Event, options: Mapping[str, str]) -> Body:
    data = event.data
    usage = {
        "workflow_id": _required(event, "workflow_name"),
        "model": data.get("model_name"),
        "input_tokens": data.get("prompt_tokens", 0),
        "output_tokens": data.get("completion_tokens", 0),
        "total_tokens": data.get("total_tokens", 0),
        "invocation_id": data.get("invocation_id"),
    }
    usage.update({name: data[name] for name in _USAGE_EXTRAS if name in data})
    item = {
        "event_type": options.get("event_type", "token_usage"),
        "app_id": _required(event, "app_id"),
        "user_id": _required(event, "user_id"),
        "timestamp": _zulu(data.get("event_ts"), event),
        "data": usage,
    }
    return Body(_json({"events": [item]}))


def _insights_events(event: Event, options: Mapping[str, str]) -> Body:
    app_id = options.get("app_id") or event.data.get("app_id")
    if not app_id:
        raise FormatError(f"insights-events needs format_options.app_id or data.app_id "
                          f"({event.type})")
    when = format_time(event.time)
    message = event.data.get("message")
    item = {
        "eventId": event.id,
        "t": when,
        "type": event.type,
        "severity": event.data.get("severity") or options.get("severity", "info"),
        "message": message if isinstance(message, str) else event.type,
        "data": event.data,
    }
    body = {"appId": app_id, "env": options.get("env", "production"), "sentAtUtc": when,
            "events": [item]}
    return Body(_json(body), headers={"X-Correlation-Id": event.correlationid or event.id})


FORMATS: Mapping[str, Formatter] = {
    "cloudevents": _cloudevents,
    "data": _data,
    "email-notification": _email,
    "billing-usage": _billing_usage,
    "insights-events": _insights_events,
}


def render(format_name: str, event: Event, options: Mapping[str, str] | None = None) -> Body:
    """The body of ``event`` in ``format_name``; FormatError / SkipDelivery as above."""
    formatter = FORMATS.get(format_name)
    if formatter is None:
        known = ", ".join(sorted(FORMATS))
        raise FormatError(f"unknown format {format_name!r}; known: {known}")
    try:
        return formatter(event, options or {})
    except (TypeError, ValueError) as exc:
        if isinstance(exc, MozaiksBusError):
            raise
        raise FormatError(f"cannot encode {event.type} as {format_name}: {exc}") from None
